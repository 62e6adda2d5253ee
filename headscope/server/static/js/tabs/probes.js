// The Probes tab: each head as a classifier of a relation between words (Clark et al. 2019). Pairs are
// JSONL pasted, uploaded or taken from an example set (GET /api/probe/info); POST /api/probe answers each
// head's accuracy [layer][head] per kind, the best fixed-offset baseline and the best heads, drawn
// here as a heatmap per kind and a table. The model is the one in the page's picker.
import { el as shell, elements, make } from '../lib/dom.js';
import { fetchProbeInfo, runProbe } from '../lib/api.js';
import { byRows } from '../lib/dims.js';
import { drawHeatmap } from '../lib/heatmap.js';
import { register } from '../lib/registry.js';

const el = { model: shell.model, ...elements(['probe-example', 'probe-use-example', 'probe-file', 'probe-pairs', 'probe-run',
  'probe-status', 'probe-baseline', 'probe-notes', 'probe-plots', 'probe-table', 'probe-skipped']) };

let info = null; // GET /api/probe/info: format, limits, example sets
let setup = null; // the promise of loading them and wiring the controls, made once
let running = null; // the AbortController of the probe in flight

const pct = (v) => v.toFixed(3);
const signed = (v) => `${v >= 0 ? '+' : ''}${v.toFixed(3)}`;

function setStatus(text, kind = 'info') {
  el.probeStatus.textContent = text;
  el.probeStatus.dataset.kind = kind;
}

async function loadInfo() {
  info = await fetchProbeInfo();
  el.probeExample.replaceChildren(...info.examples.map((e) =>
    make('option', { text: `${e.name}: ${e.description}`, attrs: { value: e.name } })));
}

function useExample() {
  const example = info.examples.find((e) => e.name === el.probeExample.value);
  if (example) el.probePairs.value = example.pairs;
}

// One kind's accuracy as a layers x heads heatmap (its axes read from the answer's `dims`).
async function drawKind(kind, data, result) {
  const accuracy = byRows(data.accuracy, result.dims, 'layer'); // [layer][head]
  const L = accuracy.length, H = accuracy[0].length;
  const box = make('div', { className: 'plot', attrs: { 'data-kind': kind } });
  el.probePlots.append(box);
  await drawHeatmap(box, {
    matrix: Float32Array.from(accuracy.flat()),
    rows: [...Array(L).keys()].map((l) => `L${l}`), cols: [...Array(H).keys()].map((h) => `H${h}`),
    title: `Accuracy per head (${kind}); baseline ${pct(result.baseline.accuracy)}`,
    zmin: 0, zmax: 1, colorbarTitle: 'accuracy', xTitle: 'head', yTitle: 'layer', joiner: '',
  });
}

function drawTable(result) {
  const header = make('tr');
  header.append(...['head', 'kind', 'correct', 'accuracy', 'vs baseline'].map((h) => make('th', { text: h })));
  const base = result.baseline;
  const baseRow = make('tr', { className: 'baseline', attrs: { 'data-baseline': base.offset } });
  baseRow.append(make('td', { text: `baseline: offset ${base.offset > 0 ? '+' : ''}${base.offset}` }), make('td', { text: '' }),
    make('td', { text: `${base.correct}/${result.pairs}`, className: 'num' }), make('td', { text: pct(base.accuracy), className: 'num' }),
    make('td', { text: '', className: 'num' }));
  const rows = result.best.map((h) => {
    const tr = make('tr', { attrs: { 'data-head': h.name, 'data-kind': h.kind } });
    tr.append(make('td', { text: h.name }), make('td', { text: h.kind }),
      make('td', { text: `${h.correct}/${result.pairs}`, className: 'num' }),
      make('td', { text: pct(h.accuracy), className: 'num', attrs: { 'data-accuracy': h.accuracy } }),
      make('td', { text: signed(h.above_baseline), className: 'num' }));
    return tr;
  });
  const thead = make('thead');
  thead.append(header);
  const tbody = make('tbody');
  tbody.append(baseRow, ...rows);
  el.probeTable.replaceChildren(thead, tbody);
}

function drawSkipped(skipped) {
  el.probeSkipped.hidden = !skipped.length;
  el.probeSkipped.querySelector('summary').textContent = `${skipped.length} pair${skipped.length === 1 ? '' : 's'} skipped`;
  el.probeSkipped.querySelector('ul').replaceChildren(...skipped.map((s) => make('li', { text: `line ${s.line}: ${s.reason}` })));
}

function clear() {
  el.probePlots.replaceChildren();
  el.probeTable.replaceChildren();
  el.probeBaseline.textContent = '';
  el.probeNotes.hidden = true;
  drawSkipped([]);
}

async function run() {
  const pairs = el.probePairs.value;
  if (!pairs.trim()) return setStatus('Paste pairs (one JSON object per line), choose a file, or use an example.', 'error');
  running?.abort();
  running = new AbortController();
  const model = el.model.value;
  el.probePlots.dataset.state = 'loading';
  setStatus(`Probing ${model}…`);
  let result;
  try {
    result = await runProbe({ pairs, model }, running.signal);
  } catch (e) {
    if (e.name === 'AbortError') return;
    clear();
    el.probePlots.dataset.state = 'error';
    return setStatus(e.message, 'error');
  }
  clear();
  const base = result.baseline;
  el.probeBaseline.textContent = `Baseline: always the word at offset ${base.offset > 0 ? '+' : ''}${base.offset} from the from-word, `
    + `right on ${base.correct} of ${result.pairs} pairs (${pct(base.accuracy)}).`;
  const notes = Object.values(result.kinds).map((k) => k.note).filter(Boolean);
  el.probeNotes.textContent = notes.join(' ');
  el.probeNotes.hidden = !notes.length;
  drawTable(result);
  drawSkipped(result.skipped);
  for (const [kind, data] of Object.entries(result.kinds)) await drawKind(kind, data, result);
  const best = result.best[0];
  setStatus(`${result.model}: ${result.pairs} pairs in ${result.sentences} sentences; best head ${best.name} (${best.kind}) `
    + `${pct(best.accuracy)} vs baseline ${pct(base.accuracy)}.`);
  el.probePlots.dataset.state = 'ready';
}

function wire() {
  el.probeUseExample.addEventListener('click', useExample);
  el.probeFile.addEventListener('change', async () => {
    const file = el.probeFile.files[0];
    if (file) el.probePairs.value = await file.text();
  });
  el.probeRun.addEventListener('click', run);
}

async function start() {
  try {
    await loadInfo();
  } catch (e) {
    setup = null; // try again when the tab opens next
    return setStatus(e.message, 'error');
  }
  wire();
  if (!el.probePairs.value.trim()) useExample();
  el.probeRun.disabled = false;
}

// Drawn when the tab opens: the first time, load the example sets and wire the controls.
function draw() {
  setup ??= start();
  return setup;
}

register(import.meta.url, { draw });
