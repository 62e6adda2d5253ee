// The Patching tab: POST /api/patch, streamed (docs/patching.md). A clean and a corrupted prompt (the corrupted one
// can be made from the clean one by swapping two of its words), the answer and the wrong token, the metric, what is
// patched and in which direction; the answer's maps drawn as Plotly heatmaps, each read through its own `dims` and
// `labels` (layer x head, layer x position, or layer·head x position), the colour scale centred on zero, the recovery
// on hover with the patched metric. Everything it asks is in the URL (&clean=&corrupted=&answer=&wrong=&metric=
// &patch=&direction=); a link with a clean and a corrupted prompt runs on arrival.
// What the browser tests read: body[data-patching] (running | done | cancelled | error), #pt-maps .pt-map[data-map]
// (one Plotly div per map, data-map = its name), #pt-maps[data-model], #pt-patterns[data-head] (kind:layer:head).
import { el as shell, elements, make } from '../lib/dom.js';
import { fetchHead, fetchPredictions, fetchStream } from '../lib/api.js';
import { DIVERGING } from '../lib/colors.js';
import { drawHeatmap, escapeLabel, loadPlotly } from '../lib/heatmap.js';
import { register } from '../lib/registry.js';

const el = { model: shell.model, ...elements(['pt-clean', 'pt-corrupted', 'pt-swap-a', 'pt-swap-b', 'pt-swap', 'pt-words',
  'pt-answer', 'pt-wrong', 'pt-metric', 'pt-patch', 'pt-direction', 'pt-run', 'pt-cancel', 'pt-progress', 'pt-status',
  'pt-tokens', 'pt-summary', 'pt-maps', 'pt-patterns', 'pt-pattern-note', 'pt-pattern-clean', 'pt-pattern-corrupted']) };

const FIELDS = ['clean', 'corrupted', 'answer', 'wrong', 'metric', 'patch', 'direction']; // URL name = request field
const input = (name) => el[`pt${name[0].toUpperCase()}${name.slice(1)}`];
const results = new Map(); // model name -> its last patching answer
let controller = null;
let runOnArrival = false; // the URL gave both prompts: run once the tab is drawn
const PLOT = { displaylogo: false, responsive: true };
const fmt = (v) => (v === null ? 'undefined' : Math.abs(v) >= 0.01 || v === 0 ? v.toFixed(4) : v.toExponential(2));

function showStatus(text, state) {
  el.ptStatus.textContent = text;
  el.ptStatus.dataset.kind = state === 'error' ? 'error' : 'info';
  document.body.dataset.patching = state;
}

// The clean prompt's words (split at white space) and the separators between them.
function words(text) {
  const parts = text.split(/(\s+)/);
  return { parts, at: parts.map((p, i) => i).filter((i) => parts[i] && !/^\s+$/.test(parts[i])) };
}

function showWords() {
  const { parts, at } = words(el.ptClean.value);
  el.ptWords.textContent = at.length ? at.map((i, n) => `${n + 1}:${parts[i]}`).join(' ') : '';
  el.ptSwapA.max = el.ptSwapB.max = Math.max(1, at.length);
}

// Corrupted = clean with words a and b (1-based) swapped.
function swap() {
  const { parts, at } = words(el.ptClean.value);
  const a = +el.ptSwapA.value - 1, b = +el.ptSwapB.value - 1;
  if (!(a >= 0 && b >= 0 && a < at.length && b < at.length) || a === b) {
    return showStatus(`Pick two different words between 1 and ${at.length} of the clean prompt.`, 'error');
  }
  [parts[at[a]], parts[at[b]]] = [parts[at[b]], parts[at[a]]];
  el.ptCorrupted.value = parts.join('');
  showStatus('', 'idle');
}

// The value of nested lists whose axes are `dims` at index {axis name: i}.
const at = (nested, dims, index) => dims.reduce((v, d) => v[index[d]], nested);

// A map as rows x columns: the columns are its position axis (else its head axis), the rows every combination of the
// other axes in their order (layer, or layer·head). Each axis's size and labels come from `labels`.
function grid(map) {
  const cols = map.dims.includes('position') ? 'position' : map.dims[map.dims.length - 1];
  const rowDims = map.dims.filter((d) => d !== cols);
  let rows = [{}];
  for (const d of rowDims) rows = rows.flatMap((r) => map.labels[d].map((_, i) => ({ ...r, [d]: i })));
  const x = map.labels[cols].map((_, i) => i);
  const cell = (values) => rows.map((r) => x.map((c) => at(values, map.dims, { ...r, [cols]: c })));
  return {
    cols, rowDims, rows, x, y: rows.map((_, i) => i),
    xLabels: map.labels[cols], yLabels: rows.map((r) => rowDims.map((d) => map.labels[d][r[d]]).join('')),
    recovery: cell(map.recovery), patched: cell(map.patched),
  };
}

async function drawMap(Plotly, div, map, result) {
  const g = grid(map);
  const largest = Math.max(1e-12, ...g.recovery.flat().filter((v) => v !== null).map(Math.abs));
  const trace = {
    type: 'heatmap', z: g.recovery, x: g.x, y: g.y, customdata: g.patched,
    text: g.y.map((r) => g.x.map((c) => `${escapeLabel(g.yLabels[r])} · ${escapeLabel(g.xLabels[c])}`)),
    colorscale: DIVERGING, zmin: -largest, zmax: largest, xgap: 1, ygap: 1, hoverongaps: false,
    texttemplate: g.x.length * g.y.length <= 150 ? '%{z:.2f}' : '',
    hovertemplate: `%{text}: recovery %{z:.4g}<br>${escapeLabel(result.metric.name)} patched %{customdata:.4g}<extra></extra>`,
    colorbar: { title: { text: 'recovery', side: 'right' } },
  };
  const ticks = (vals, labels) => ({ tickmode: 'array', tickvals: vals, ticktext: labels.map(escapeLabel) });
  const layout = {
    title: { text: `${escapeLabel(map.name)}: recovery, ${escapeLabel(result.direction)}` },
    xaxis: { title: { text: g.cols }, ...ticks(g.x, g.xLabels) },
    yaxis: { title: { text: g.rowDims.join(' · ') }, autorange: 'reversed', ...ticks(g.y, g.yLabels) },
    margin: { t: 40 }, height: Math.max(260, 80 + 22 * g.y.length),
  };
  await Plotly.react(div, [trace], layout, PLOT);
  if (map.point === 'z') { // a head's output: click one to see its pattern on both prompts
    div.removeAllListeners?.('plotly_click');
    div.on('plotly_click', (e) => {
      const p = e.points[0], at = { ...g.rows[p.y], [g.cols]: p.x };
      if (at.head !== undefined) showPatterns(result, map.kind, at.layer, at.head);
    });
  }
}

// One head's attention pattern on the clean and the corrupted prompt, side by side (POST /api/attention, exact).
async function showPatterns(result, kind, layer, head) {
  const name = `L${layer}H${head}`;
  el.ptPatternNote.textContent = `${name} (${kind}) on both prompts: loading…`;
  el.ptPatterns.hidden = false;
  try {
    const [clean, corrupted] = await Promise.all([result.clean.text, result.corrupted.text].map((text) =>
      fetchHead({ text, model: result.model, truncate: false }, { kind, layer, head }, true)));
    const shown = [[clean, el.ptPatternClean, 'clean'], [corrupted, el.ptPatternCorrupted, 'corrupted']];
    const zmax = Math.max(...shown.map(([kd]) => Math.max(...kd.values)));
    await Promise.all(shown.map(([kd, div, which]) => {
      const matrix = Float32Array.from({ length: kd.Tq * kd.Tk },
        (_, i) => kd.values[Math.floor(i / kd.Tk) * kd.strides.query_pos + (i % kd.Tk) * kd.strides.key_pos]);
      return drawHeatmap(div, { matrix, rows: kd.rows.tokens, cols: kd.cols.tokens, title: `${name} ${kind}, ${which}`, zmax });
    }));
    el.ptPatterns.dataset.head = `${kind}:${layer}:${head}`;
    el.ptPatternNote.textContent = `${name} (${kind}): its attention pattern on the clean prompt (left) and the corrupted one (right), one colour scale.`;
  } catch (e) {
    el.ptPatternNote.textContent = `${name}: ${e.body?.detail || e.message}`;
  }
}

function describe(r) {
  const m = r.metric;
  const tok = (t) => (t ? `${JSON.stringify(t.text)} (${t.token})` : '');
  const answers = [m.answer && `answer ${tok(m.answer)}`, m.wrong && `wrong ${tok(m.wrong)}`].filter(Boolean).join(', ');
  return `${r.model}, ${r.patch}, ${r.direction}: ${r.direction_about} Metric ${m.name} (${m.units}${m.where ? `, ${m.where}` : ''})`
    + `${answers ? `, ${answers}` : ''}. Clean ${fmt(r.clean_metric)}, corrupted ${fmt(r.corrupted_metric)}. `
    + `Recovery = ${r.recovery_formula}.${r.recovery_note ? ` ${r.recovery_note}` : ''} `
    + `${r.cells} cells in ${r.forward_passes} forward passes.`;
}

async function draw() {
  if (runOnArrival) { runOnArrival = false; run(); return; }
  const result = results.get(el.model.value);
  if (!result) {
    el.ptSummary.textContent = 'Type a clean and a corrupted prompt of the same length, the answer and the wrong token, and press Patch.';
    el.ptMaps.replaceChildren();
    delete el.ptMaps.dataset.model;
    el.ptPatterns.hidden = true;
    return;
  }
  el.ptSummary.textContent = describe(result);
  el.ptSummary.dataset.clean = result.clean_metric;
  el.ptSummary.dataset.corrupted = result.corrupted_metric;
  const Plotly = await loadPlotly();
  const divs = result.maps.map((map) => make('div', { className: 'plot pt-map', attrs: { 'data-map': map.name } }));
  el.ptMaps.replaceChildren(...divs);
  await Promise.all(result.maps.map((map, i) => drawMap(Plotly, divs[i], map, result)));
  el.ptMaps.dataset.model = result.model;
}

// The request the controls ask for: empty answer, wrong and metric are left out (the server's defaults).
function request() {
  const req = { model: el.model.value, clean: el.ptClean.value, corrupted: el.ptCorrupted.value,
    patch: el.ptPatch.value, direction: el.ptDirection.value, stream: true };
  for (const name of ['answer', 'wrong', 'metric']) if (input(name).value !== '') req[name] = input(name).value;
  return req;
}

// An error in words: the 422's detail, and both tokenizations or the answer's tokens when the answer gives them.
function showError(e) {
  const body = e.body || {};
  showStatus(body.detail || e.message, 'error');
  const lines = [];
  if (body.clean_tokens) lines.push(`clean (${body.clean_tokens.length}):     ${body.clean_tokens.join(' | ')}`);
  if (body.corrupted_tokens) lines.push(`corrupted (${body.corrupted_tokens.length}): ${body.corrupted_tokens.join(' | ')}`);
  if (body.tokens && body.field) lines.push(`${body.field}: ${body.tokens.join(' | ')}`);
  el.ptTokens.textContent = lines.join('\n');
  el.ptTokens.hidden = !lines.length;
}

// Answer and wrong proposed from the predictions (POST /api/predict) when the user typed neither, for the models that
// predict a next token (their <option>'s data-generation among config.metric_choice.generations): the clean run's
// top-1 as answer; as wrong, the corrupted run's most probable token that differs, else the clean run's second.
const PROPOSALS = 5;
async function propose(req, signal) {
  const o = [...el.model.options].find((option) => option.value === req.model);
  if (req.answer !== undefined || req.wrong !== undefined || req.metric === 'embedding_cosine') return;
  if (!o || !page.config.metric_choice.generations.includes(o.dataset.generation)) return;
  const typeable = (ps) => ps.filter((p) => p.text !== null);
  const [clean, corrupted] = await Promise.all([req.clean, req.corrupted].map((text) =>
    fetchPredictions({ text, model: req.model, k: PROPOSALS }, signal).then(typeable)));
  if (!clean.length) return;
  const answer = clean[0];
  const wrong = corrupted.find((p) => p.id !== answer.id) || clean[1];
  el.ptAnswer.value = req.answer = answer.text;
  if (wrong) el.ptWrong.value = req.wrong = wrong.text;
  el.ptAnswer.title = `proposed: the clean prompt's most probable next token (p = ${answer.prob.toFixed(3)})`;
}

async function run() {
  const req = request();
  if (!req.clean.trim() || !req.corrupted.trim()) return showStatus('Type a clean and a corrupted prompt.', 'error');
  try {
    await propose(req);
  } catch (e) {
    return showError(e);
  }
  page?.writeState();
  controller = new AbortController();
  el.ptRun.disabled = true;
  el.ptCancel.disabled = false;
  el.ptProgress.value = 0;
  el.ptTokens.hidden = true;
  showStatus('Running the clean and the corrupted prompt…', 'running');
  try {
    const result = await fetchStream('/api/patch', req, (done, total) => {
      el.ptProgress.max = total;
      el.ptProgress.value = done;
      el.ptStatus.textContent = `${done} / ${total} cells patched`;
    }, controller.signal);
    results.set(req.model, result);
    el.ptProgress.value = el.ptProgress.max;
    await draw();
    showStatus(`${result.cells} cells patched in ${result.forward_passes} forward passes.`, 'done');
  } catch (e) {
    results.delete(req.model); // an error clears the old result
    await draw();
    if (e.name === 'AbortError') showStatus('Cancelled.', 'cancelled');
    else showError(e);
  } finally {
    el.ptRun.disabled = false;
    el.ptCancel.disabled = true;
  }
}

function readUrl(q) {
  for (const name of FIELDS) {
    const v = q.get(name);
    if (v === null) continue;
    const box = input(name);
    if (box.tagName === 'SELECT' && ![...box.options].some((o) => o.value === v)) continue; // not one it offers
    box.value = v;
  }
  showWords();
  runOnArrival = Boolean(el.ptClean.value.trim() && el.ptCorrupted.value.trim());
  return false;
}

function writeUrl(q) {
  for (const name of FIELDS) {
    const v = input(name).value;
    const fallback = name === 'patch' || name === 'direction' ? page.config.patching.defaults[name] : '';
    if (v !== fallback) q.set(name, v);
  }
}

let page = null;

function setup(p, tab) {
  page = p;
  el.ptRun.addEventListener('click', () => run());
  el.ptCancel.addEventListener('click', () => controller?.abort());
  el.ptSwap.addEventListener('click', () => { swap(); page.writeState(); });
  el.ptClean.addEventListener('input', showWords);
  for (const name of FIELDS) input(name).addEventListener('change', () => { if (page.state.tab === tab.name) page.writeState(); });
  el.model.addEventListener('change', () => { if (page.state.tab === tab.name) page.redraw(); });
  showWords();
}

register(import.meta.url, { setup, draw, readUrl, writeUrl });
