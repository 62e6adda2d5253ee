// The page: reads its state from the URL, runs the analysis, draws the grid and the views.
// State in the URL (?text=&model=&layer=&head=&kind=&tab=&words=&nospecial=&step=&weights=&rollout=&ablate=&ablation=) means any
// view can be shared, bookmarked and tested. With tab=playground the URL holds the Playground's
// settings (playground.js). With tab=mechanism, kind/layer/head (and query) name the
// head that tab explains, and no detail dialog opens.
import { el, make } from './dom.js';
import { ApiError, fetchAttention, fetchHead, fetchHeads } from './api.js';
import { isPooled, makeView } from './views.js';
import { drawGrids, headName, highlightRow, labelRoles } from './grid.js';
import { drawHeatmap, loadPlotly } from './heatmap.js';
import { drawHeadMap, drawHeadTable, drawSimilarity, drawCompareHeads, drawCompareTexts, fillKindSelects, hasCorpus, setupCorpus } from './heads.js';
import { drawMechanism, mech, setupMechanism } from './mechanism.js';
import { drawPlayground, readPlaygroundUrl, setupPlayground, writePlaygroundUrl } from './playground.js';
import { drawExperiment } from './experiment.js';
import { drawProbes } from './probes.js';
import { drawRollout } from './rollout.js';
import { ablate, ablateFields, drawAblateError, drawEffect, markGrid, readAblate, setupAblate, toggleHead, writeAblate } from './ablate.js';
import { drawImportance, setupImportance } from './importance.js';

const state = { text: '', model: el.model.value, truncate: false, layer: null, head: null, kind: null,
  tab: 'grid', words: false, nospecial: false, fit: false, step: null, gen: null, weights: 'attention', rollout: false };
const WEIGHTS = ['attention', 'value_norm']; // what the grid can show (the request's `weights`)
let result = null; // the last /api/attention answer, decoded
let views = {}; // kind -> view of the grid (after the word / special-token options)
let controller = null;
let summary = ''; // the status line of the result on screen, shown again after other messages
const LOW_PROB = 0.9; // output tokens the model gave less than this probability are marked unsure

function readState() {
  const q = new URLSearchParams(location.search);
  const int = (name) => (q.has(name) && /^\d+$/.test(q.get(name)) ? +q.get(name) : null);
  state.text = q.get('text') || '';
  if (q.has('model') && [...el.model.options].some((o) => o.value === q.get('model'))) state.model = q.get('model');
  state.truncate = q.get('truncate') === '1';
  state.layer = int('layer');
  state.head = int('head');
  state.kind = q.get('kind');
  state.gen = int('gen');
  state.tab = q.get('tab') || 'grid';
  if (state.tab === 'mechanism') {
    Object.assign(mech, { kind: state.kind, layer: state.layer, head: state.head, query: int('query') });
    state.layer = state.head = null;
  }
  if (state.tab === 'playground') readPlaygroundUrl(q);
  state.words = q.get('words') === '1';
  state.nospecial = q.get('nospecial') === '1';
  state.fit = q.get('fit') === '1';
  state.step = int('step');
  readWeightsState(q);
  readAblate(q);
}

// `weights` and `rollout` in the URL: what every head shows, and the rollout under the grid.
function readWeightsState(q) {
  state.weights = WEIGHTS.includes(q.get('weights')) ? q.get('weights') : 'attention';
  state.rollout = q.get('rollout') === '1';
}

function writeWeightsState(q) {
  if (state.weights !== 'attention') q.set('weights', state.weights);
  if (state.rollout) q.set('rollout', '1');
}

function writeState() {
  const q = new URLSearchParams();
  if (state.text) q.set('text', state.text);
  q.set('model', state.model);
  if (state.truncate) q.set('truncate', '1');
  if (state.tab !== 'grid') q.set('tab', state.tab);
  if (state.words) q.set('words', '1');
  if (state.nospecial) q.set('nospecial', '1');
  if (state.fit) q.set('fit', '1');
  const open = state.tab === 'mechanism' ? mech : state;
  if (open.kind !== null && open.layer !== null && open.head !== null) {
    q.set('kind', open.kind);
    q.set('layer', open.layer);
    q.set('head', open.head);
  }
  if (state.tab === 'mechanism' && mech.query !== null) q.set('query', mech.query);
  if (state.step !== null) q.set('step', state.step);
  if (state.gen !== null) q.set('gen', state.gen);
  writeWeightsState(q);
  writeAblate(q);
  if (state.tab === 'playground') writePlaygroundUrl(q);
  history.replaceState(null, '', `${location.pathname}?${q}`);
}

function setStatus(text, kind = 'info') {
  el.status.textContent = text;
  el.status.dataset.kind = kind;
}

// What the chosen model can generate, from its <option>'s data-* attributes (GET /api/models).
function modelGeneration(name = el.model.value) {
  const o = [...el.model.options].find((option) => option.value === name);
  return o && o.dataset.generation ? { kind: o.dataset.generation, max: +o.dataset.maxNewTokens, default: +o.dataset.defaultNewTokens } : null;
}

// Show the generation control that fits the chosen model: "continue by" for a causal LM,
// "output up to" for an encoder-decoder, nothing for an encoder.
function showGenerationControl() {
  const g = modelGeneration();
  el.genLabel.hidden = !g;
  if (!g) return;
  el.genWhat.textContent = g.kind === 'continuation' ? 'continue by' : 'output up to';
  el.gen.min = g.kind === 'continuation' ? 0 : 1;
  el.gen.max = g.max;
  el.gen.value = state.gen ?? g.default;
}

export function roles(kind, layer, head) {
  const heads = result?.heads?.[kind];
  const record = heads && heads[layer * result.kinds[kind].H + head];
  return record ? record.roles : [];
}

// ---- analysis -------------------------------------------------------------------------------

// An API error in the page's words (the API's own wording names request fields).
function errorMessage(e) {
  if (!(e instanceof ApiError)) return `Error: ${e.message}`;
  const body = e.body || {};
  if (body.error === 'too_many_tokens' && body.count) {
    return `This text has ${body.count} tokens; ${state.model} reads at most ${body.limit}. Shorten it, or tick "cut to fit" to analyze its first ${body.limit}.`;
  }
  return e.message;
}

function clearResult() {
  result = null;
  views = {};
  fetchedHeads.clear();
  el.grids.replaceChildren();
  el.output.hidden = true;
  drawEffect(null);
  el.hoverName.textContent = '';
  el.transformLabel.textContent = '';
  summary = '';
  if (el.detail.open) el.detail.close();
}

// Where a cut text stopped: the end of the last input token that came from the text.
function cutNote() {
  if (!result.truncated) return '';
  const ends = result.offsets.filter(Boolean).map((o) => o[1]);
  const end = ends.length ? Math.max(...ends) : 0;
  return ` · text cut to fit: read up to character ${end} of ${state.text.length} (…${state.text.slice(Math.max(0, end - 20), end)})`;
}

async function analyze() {
  const started = performance.now();
  state.text = el.text.value;
  state.model = el.model.value;
  state.truncate = el.truncate.checked;
  const generation = modelGeneration();
  state.gen = generation && el.gen.value !== '' && +el.gen.value !== generation.default ? +el.gen.value : null;
  if (!state.text.trim()) {
    setStatus('Type or paste some text first.', 'error');
    return;
  }
  controller?.abort();
  controller = new AbortController();
  document.body.dataset.state = 'loading';
  setStatus('Analyzing…');
  try {
    result = await fetchAttention({ ...state, generation: generation?.kind, newTokens: state.gen, weights: state.weights,
      rollout: state.rollout, ...ablateFields() }, controller.signal);
  } catch (e) {
    if (e.name === 'AbortError') return;
    clearResult(); // what was on screen belonged to the previous input
    document.body.dataset.state = 'error';
    setStatus(errorMessage(e), 'error');
    if (ablate.heads.length && e.body && ['bad_ablation', 'too_many_heads', 'not_ablatable'].includes(e.body.error)) {
      drawAblateError(e.body.detail);
    }
    return;
  }
  fetchedHeads.clear();
  drawAll();
  const ms = performance.now() - started;
  document.body.dataset.paintMs = ms.toFixed(1); // Analyze to every head painted, for bench/page.py
  const n = result.tokens.length;
  const first = Object.values(result.kinds)[0];
  summary = `${result.model}: ${n} tokens · ${first.L} layers × ${first.H} heads${cutNote()} · ${ms.toFixed(0)} ms`;
  setStatus(summary);
  if (!Object.hasOwn(result.kinds, state.kind ?? '')) state.kind = Object.keys(result.kinds)[0];
  writeState();
  if (state.layer !== null && state.head !== null && state.layer < result.kinds[state.kind].L
      && state.head < result.kinds[state.kind].H) {
    openDetail(state.kind, state.layer, state.head);
  }
  await fetchMetrics(controller.signal);
}

// The per-head metrics and roles, after the grid is painted (the server computed them meanwhile):
// then the roles in tooltips and the dialog, and the tab that shows metrics. `ready` once they are in.
async function fetchMetrics(signal) {
  const shown = result;
  let answer;
  try {
    answer = await fetchHeads(resultRequest(), signal);
  } catch (e) {
    if (e.name === 'AbortError' || shown !== result) return;
    document.body.dataset.state = 'ready';
    setStatus(`The head metrics could not be fetched: ${e.message}`, 'error');
    return;
  }
  if (shown !== result) return; // another analysis has started
  result.heads = answer.heads;
  labelRoles(el.grids, roles);
  markGrid(el.grids); // the ablated heads' titles say so again
  showDetailRoles();
  drawTab();
  document.body.dataset.state = 'ready';
}

// "fit on screen": thumbnails as large as lets every kind's whole grid fit below the controls, in
// the viewport (with every kind side by side where the width allows).
function fitGrids() {
  document.body.classList.toggle('fit', state.fit);
  if (!state.fit || !result) return;
  const kinds = Object.values(result.kinds);
  const top = el.grids.getBoundingClientRect().top + window.scrollY; // where the grids start on the page
  const heading = 48, gap = 3, axis = 28;
  const rows = Math.max(...kinds.map((k) => k.L));
  const tall = (window.innerHeight - top - heading) / (rows + 1) - gap; // +1: the head-number row
  const wide = (el.grids.clientWidth - kinds.length * (axis + 32)) / kinds.reduce((n, k) => n + k.H, 0) - gap;
  el.grids.style.setProperty('--cell', `${Math.max(12, Math.floor(Math.min(tall, wide)))}px`);
}

function drawAll() {
  el.hoverName.textContent = '';
  views = drawGrids(el.grids, result, { words: state.words, nospecial: state.nospecial },
    { onOpen: openOrAblate, onHover: showHoverName, roles });
  markGrid(el.grids);
  drawEffect(result);
  const notes = [...new Set(Object.values(views).map((v) => v.note).filter(Boolean))];
  el.transformLabel.textContent = notes.length ? `Transformed view: ${notes.join('; ')}` : '';
  drawWeightsLabel();
  drawRollout(el.rollout, result, views);
  fitGrids();
  fillKindSelects(Object.keys(result.kinds));
  drawOutput();
  drawTab();
}

// What the grid's numbers are, from the answer's own description (`weights`): attention weights or value norms.
function drawWeightsLabel() {
  const w = result.weights;
  el.weightsLabel.dataset.weights = w.name;
  el.weightsLabel.textContent = w.rows_sum_to_one ? '' : `Showing ${w.label}: ${w.units}; not probabilities, rows do not `
    + 'sum to 1; each head shaded to its own maximum. Metrics, roles, Similarity and Mechanism use the attention weights; '
    + 'Compare shows what the grid shows.';
}

// A click on a grid head: in ablate mode it knocks the head out (or back in) and runs the text again.
function openOrAblate(kind, layer, head) {
  if (!ablate.mode) return openDetail(kind, layer, head);
  toggleHead(kind, layer, head);
  markGrid(el.grids);
  return analyze();
}

function showHoverName(kind, layer, head) {
  const r = roles(kind, layer, head);
  el.hoverName.textContent = `${headName(layer, head)} (${kind})${r.length ? ': ' + r.join(', ') + ' (roles on this text)' : ''}`;
}

// ---- generation steps (models with a decoder) -------------------------------------------------

// Kinds whose rows are the decoder's output positions: the step slider highlights one of them.
const outputRowViews = () => Object.values(views).filter((v) => v.layout.rows === 'output_tokens');

function drawOutput() {
  const rows = result.output_tokens;
  const continuation = result.generated && result.generated.some(Boolean);
  el.output.hidden = !rows && !continuation;
  el.stepControl.hidden = !rows;
  el.outputLabel.textContent = !rows ? 'Text and its continuation (generated tokens marked):'
    : result.output_probs ? `Output (hover a token for its probability; wavy underline: under ${LOW_PROB}):` : 'Output:';
  if (continuation) {
    el.outputText.replaceChildren(...result.tokens.map((t, i) =>
      make('span', { text: t, className: result.generated[i] ? 'generated' : 'prompt' })));
  }
  if (!rows) { state.step = null; return; }
  el.step.max = rows.length;
  if (state.step === null || state.step > rows.length) state.step = rows.length;
  el.step.value = state.step;
  showStep();
}

function showStep() {
  const rows = result.output_tokens;
  const row = state.step - 1;
  const produced = state.step < rows.length ? rows[state.step] : '</s>';
  el.stepLabel.textContent = `${state.step}/${rows.length}: row ${row} (${rows[row]}) produced ${produced}`;
  const probs = result.output_probs || [];
  el.outputText.replaceChildren(...rows.slice(1).map((t, i) => {
    const span = make('span', { text: t, className: i === row ? 'current' : i < row ? 'done' : 'todo' });
    if (probs[i] !== undefined) {
      span.title = `p = ${probs[i].toFixed(3)}`;
      span.dataset.prob = probs[i].toFixed(4);
      if (probs[i] < LOW_PROB) span.classList.add('unsure');
    }
    return span;
  }));
  const check = result.output_check; // a model-specific check, as data: {name, ok, label, description}
  el.outputValid.hidden = !check;
  el.outputValid.textContent = check ? check.label : '';
  el.outputValid.title = check ? check.description : '';
  el.outputValid.dataset.valid = String(check ? check.ok : null);
  for (const view of outputRowViews()) highlightRow(el.grids, view, Math.floor(row / view.pool[0]));
  markGrid(el.grids); // repainting cleared the hatching of ablated heads
  if (el.detail.open && views[state.kind]?.layout.rows === 'output_tokens') drawDetail();
}

// ---- detail view -------------------------------------------------------------------------------

function openDetail(kind, layer, head) {
  Object.assign(state, { kind, layer, head });
  Object.assign(mech, { kind, layer, head }); // the Mechanism tab starts from the last head opened
  writeState();
  if (!el.detail.open) el.detail.showModal();
  return drawDetail();
}

// What the request for the current result was: fetching one head again must ask the same.
function resultRequest() {
  return { text: result.text, model: result.model, truncate: state.truncate, generation: modelGeneration()?.kind,
    newTokens: state.gen, weights: result.weights.name, ablate: result.ablate?.length ? result.ablate : undefined,
    ablation: result.ablation ?? undefined };
}

// One head at full resolution, as {view, layer, head} to read with view.matrix(layer, head): from the
// grid's own data, or fetched alone when the grid was pooled (a long text) or `exact` floats are wanted.
const fetchedHeads = new Map(); // `${exact} kind layer head` -> promise of a one-head kind, for `result`
async function headView(kind, layer, head, exact = false) {
  if (!exact && !isPooled(result.kinds[kind])) return { view: views[kind], layer, head };
  const key = `${exact} ${kind} ${layer} ${head}`;
  if (!fetchedHeads.has(key)) fetchedHeads.set(key, fetchHead(resultRequest(), { kind, layer, head }, exact));
  try {
    const one = await fetchedHeads.get(key);
    return { view: makeView(one, result, { words: state.words, nospecial: state.nospecial }), layer: 0, head: 0 };
  } catch (e) {
    fetchedHeads.delete(key);
    throw e;
  }
}

async function drawDetail() {
  if (!Object.hasOwn(views, state.kind ?? '')) return;
  const { kind, layer, head } = state;
  const shown = result;
  let view, at;
  try {
    ({ view, ...at } = await headView(kind, layer, head));
  } catch (e) {
    if (shown === result) setStatus(`Cannot fetch ${headName(layer, head)}: ${e.message}`, 'error');
    return;
  }
  if (shown !== result || state.kind !== kind || state.layer !== layer || state.head !== head) return; // moved on
  const name = headName(layer, head);
  el.detailTitle.textContent = `${name} · ${state.kind}`;
  showDetailRoles();
  const matrix = view.matrix(at.layer, at.head);
  const zmax = matrix.reduce((a, b) => Math.max(a, b), 0);
  const what = result.weights;
  el.detailNote.textContent = [view.note && `Transformed view: ${view.note}.`,
    `Rows are queries, columns keys. Colour from 0 to this head's largest ${what.label}, ${zmax.toFixed(3)}${what.rows_sum_to_one ? '' : ` (${what.units}; rows do not sum to 1)`}; shown values are 8-bit (within ${(zmax / 510).toFixed(4)}); CSV export has the exact float32 values.`]
    .filter(Boolean).join(' ');
  const highlight = state.step !== null && view.layout.rows === 'output_tokens' ? state.step - 1 : -1;
  try {
    await drawHeatmap(el.heatmap, { matrix, rows: view.rows, cols: view.cols, title: `${name} ${state.kind}`, zmax, highlightRow: highlight,
      colorbarTitle: what.label });
    el.heatmap.dataset.head = name;
    el.heatmap.dataset.kind = state.kind;
  } catch (e) {
    setStatus(`Cannot draw the heatmap: ${e.message}`, 'error');
  }
}

function showDetailRoles() {
  if (state.layer === null || state.head === null) return;
  const headRoles = roles(state.kind, state.layer, state.head);
  el.detailRoles.replaceChildren(...headRoles.map((r) => make('span', { text: r, className: 'badge' })),
    ...(headRoles.length ? [make('span', { text: ' roles on this one text', className: 'hint' })] : []));
}

function closeDetail() {
  if (el.detail.open) el.detail.close();
  state.layer = state.head = null;
  writeState();
}

function step(dLayer, dHead) {
  const view = Object.hasOwn(views, state.kind ?? '') ? views[state.kind] : null;
  if (!view || state.layer === null) return;
  let layer = state.layer, head = state.head + dHead;
  if (head < 0) { head = view.H - 1; layer -= 1; }
  if (head >= view.H) { head = 0; layer += 1; }
  layer += dLayer;
  if (layer < 0 || layer >= view.L) return;
  openDetail(state.kind, layer, head);
}

function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = make('a', { attrs: { href: url, download: name } });
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function csvCell(text) {
  return /[",\n\r]/.test(text) ? `"${String(text).replace(/"/g, '""')}"` : String(text);
}

// The open head's exact float32 weights (with the view's transforms), 9 significant digits: every
// float32 written so that it reads back to the same number.
async function exportCsv() {
  let view, at;
  try {
    ({ view, ...at } = await headView(state.kind, state.layer, state.head, true));
  } catch (e) {
    return setStatus(`Cannot fetch the exact weights: ${e.message}`, 'error');
  }
  const m = view.matrix(at.layer, at.head);
  const lines = [['query \\ key', ...view.cols].map(csvCell).join(',')];
  view.rows.forEach((r, i) => lines.push([csvCell(r), ...Array.from(m.subarray(i * view.C, (i + 1) * view.C),
    (v) => String(Number(v.toPrecision(9))))].join(',')));
  download(`${headName(state.layer, state.head)}-${state.kind}.csv`, lines.join('\n') + '\n', 'text/csv');
}

async function exportImage(format) {
  const Plotly = await loadPlotly();
  Plotly.downloadImage(el.heatmap, { format, filename: `${headName(state.layer, state.head)}-${state.kind}`, width: 900, height: 800 });
}

// ---- tabs ----------------------------------------------------------------------------------------

function showTab(tab) {
  state.tab = tab;
  if (document.body.dataset.state === 'ready') setStatus(summary); // a message of another tab is over
  for (const b of el.tabs.querySelectorAll('[data-tab]')) b.setAttribute('aria-selected', String(b.dataset.tab === tab));
  for (const s of document.querySelectorAll('main > .tab')) s.hidden = s.dataset.tab !== tab;
  writeState();
  drawTab();
}

// Tabs drawn from data: name -> draw function and when it can draw (Heads, Compare and Corpus are
// drawn by their own buttons).
const TABS = {
  map: { draw: drawHeadMap, ready: () => result || hasCorpus() },
  table: { draw: drawHeadTable, ready: () => result || hasCorpus() },
  similarity: { draw: drawSimilarity, ready: () => result || hasCorpus() },
  mechanism: { draw: drawMechanism, ready: () => result },
  playground: { draw: drawPlayground, ready: () => true },
  'heads-experiment': { draw: drawExperiment, ready: () => true },
  probes: { draw: drawProbes, ready: () => true },
  importance: { draw: drawImportance, ready: () => true },
};

function drawTab() {
  const tab = TABS[state.tab];
  if (!tab || !tab.ready()) return;
  tab.draw({ result, views, state, request: result && resultRequest(), openDetail, setStatus, writeState,
    generation: result && modelGeneration(result.model),
    options: { words: state.words, nospecial: state.nospecial } });
}

// From the detail dialog to the Mechanism tab, on the open head (openDetail copied it to `mech`).
function explainOpenHead() {
  closeDetail();
  showTab('mechanism');
}

// ---- wiring ----------------------------------------------------------------------------------------

function wire() {
  el.inputForm.addEventListener('submit', (e) => { e.preventDefault(); state.layer = state.head = state.step = null; analyze(); });
  el.text.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); el.inputForm.requestSubmit(); }
  });
  el.tabs.addEventListener('click', (e) => { const b = e.target.closest('[data-tab]'); if (b) showTab(b.dataset.tab); });
  el.optFit.addEventListener('change', () => { state.fit = el.optFit.checked; writeState(); fitGrids(); });
  window.addEventListener('resize', fitGrids);
  for (const [box, key] of [[el.optWords, 'words'], [el.optNospecial, 'nospecial']]) {
    box.addEventListener('change', () => {
      state[key] = box.checked;
      writeState();
      if (result) { drawAll(); if (el.detail.open) drawDetail(); }
    });
  }
  el.model.addEventListener('change', () => { state.gen = null; ablate.heads = []; showGenerationControl(); });
  el.optWeights.addEventListener('change', () => { state.weights = el.optWeights.value; reanalyze(); });
  el.optRollout.addEventListener('change', () => { state.rollout = el.optRollout.checked; reanalyze(); });
  setupAblate(() => { state.layer = state.head = null; writeState(); if (state.text.trim()) analyze(); });
  el.example.addEventListener('click', () => {
    el.text.value = el.model.selectedOptions[0].dataset.example;
    el.inputForm.requestSubmit();
  });
  el.step.addEventListener('input', () => { state.step = +el.step.value; writeState(); showStep(); });
  el.detailClose.addEventListener('click', closeDetail);
  el.detail.addEventListener('close', () => { if (state.layer !== null) closeDetail(); });
  el.prevHead.addEventListener('click', () => step(0, -1));
  el.nextHead.addEventListener('click', () => step(0, 1));
  el.prevLayer.addEventListener('click', () => step(-1, 0));
  el.nextLayer.addEventListener('click', () => step(1, 0));
  el.detail.addEventListener('keydown', (e) => {
    const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] };
    if (moves[e.key]) { e.preventDefault(); step(...moves[e.key]); }
  });
  el.exportPng.addEventListener('click', () => exportImage('png'));
  el.exportSvg.addEventListener('click', () => exportImage('svg'));
  el.exportCsv.addEventListener('click', exportCsv);
  el.detailMechanism.addEventListener('click', explainOpenHead);
  setupMechanism(() => { writeState(); drawTab(); });
  setupPlayground(writeState);
  el.compareHeads.addEventListener('click', () => drawCompareHeads({ result, views, state, setStatus }));
  el.compareTexts.addEventListener('click', () => drawCompareTexts({ result, views, state, request: resultRequest(), setStatus }));
  for (const select of [el.mapMetric, el.mapKind, el.mapSource, el.tableKind, el.tableSource, el.similarityKind, el.similaritySource]) {
    select.addEventListener('change', drawTab);
  }
  setupCorpus(drawTab);
  setupImportance();
  el.model.addEventListener('change', () => { if (state.tab === 'importance') drawTab(); });
}

// A new answer for the same text (weights or rollout changed), keeping the open head.
function reanalyze() {
  writeState();
  if (result || el.text.value.trim()) analyze();
}

function start() {
  readState();
  el.text.value = state.text;
  el.model.value = state.model;
  el.truncate.checked = state.truncate;
  showGenerationControl();
  el.optWords.checked = state.words;
  el.optNospecial.checked = state.nospecial;
  el.optFit.checked = state.fit;
  el.optWeights.value = state.weights;
  el.optRollout.checked = state.rollout;
  wire();
  showTab(state.tab);
  document.body.dataset.state = 'idle';
  document.body.dataset.readyMs = performance.now().toFixed(1); // page interactive, for bench/page.py
  if (state.text.trim()) analyze();
}

start();
