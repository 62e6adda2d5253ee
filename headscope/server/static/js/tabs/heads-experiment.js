// The "One head or many?" tab: GET /api/one-head-or-many, measured by headscope/training/one_head_or_many.py (the
// dates architecture trained with 1, 2, 4 and 8 heads at the same width, recipe and seed). Charts of
// exact match, training loss, gradient-norm spread and local / long-range heads per head count, a
// table of every number, and the grids of the 1-head and the best multi-head model side by side.
import { elements, make } from '../lib/dom.js';
import { axis } from '../lib/api.js';
import { drawMatrix } from '../lib/canvasmap.js';
import { drawGrids, headName } from '../lib/grid.js';
import { colourMax, makeView } from '../lib/views.js';
import { loadPlotly } from '../lib/heatmap.js';
import { register } from '../lib/registry.js';

const el = elements(['ohm-recipe', 'ohm-table', 'ohm-exact', 'ohm-loss', 'ohm-spread', 'ohm-grids', 'ohm-conclusions',
  'ohm-conclusions-from']);
const THUMB_PX = 44; // a thumbnail's side: small multiples, readable side by side (not stretched to the width)

let data = null; // the record, fetched once

const label = (run) => `${run.heads} head${run.heads > 1 ? 's' : ''} (D = ${run.head_width})`;
const PLOT = { displaylogo: false, responsive: true };
const fmt = (v, digits = 3) => (v === null || v === undefined ? 'never' : typeof v === 'number' ? +v.toFixed(digits) : v);

// An example of the record -> a result the grid can draw: one kind per layout, exact float weights. The record's
// patterns are nested [layer][head][query][key] (headscope/training/one_head_or_many.py), read as lib/views.js does.
function exampleResult(example) {
  const result = { ...example, kinds: {} };
  for (const [kind, nested] of Object.entries(example.patterns)) {
    const L = nested.length, H = nested[0].length, Tq = nested[0][0].length, Tk = nested[0][0][0].length;
    const values = Float32Array.from(nested.flat(3));
    const layout = example.layout[kind];
    result.kinds[kind] = { kind, layout, L, H, Tq, Tk, values, scale: null, pool: [1, 1],
      rows: axis(result, layout.rows), cols: axis(result, layout.columns) };
  }
  return result;
}

function drawTable(runs) {
  const kinds = Object.keys(runs[0].head_roles);
  const head = ['heads', 'held-out exact', 'train exact', 'gap', 'steps to 95%', 'grad-norm CV', 'grad-norm p95',
    ...kinds.map((k) => `${k}: local / long-range of heads`)];
  const rows = runs.map((r) => [label(r), fmt(r.heldout_exact, 4), fmt(r.train_exact, 4), fmt(r.gap, 4), fmt(r.steps_to_95),
    fmt(r.grad_norm.cv), fmt(r.grad_norm.p95), ...kinds.map((k) => `${r.head_roles[k].local} / ${r.head_roles[k].long_range} of ${r.head_roles[k].heads}`)]);
  const thead = make('thead');
  const tr = make('tr');
  tr.append(...head.map((h) => make('th', { text: h })));
  thead.append(tr);
  const tbody = make('tbody');
  for (const [i, row] of rows.entries()) {
    const r = make('tr', { attrs: { 'data-heads': runs[i].heads } });
    r.append(...row.map((v) => make('td', { text: String(v) })));
    tbody.append(r);
  }
  el.ohmTable.replaceChildren(thead, tbody);
}

async function draw({ setStatus }) {
  if (!data) {
    const response = await fetch('/api/one-head-or-many');
    if (!response.ok) return setStatus(`Cannot load the measured results (${response.status}).`, 'error');
    data = await response.json();
  }
  const runs = data.runs;
  const names = runs.map(label);
  drawConclusions(data);
  el.ohmRecipe.textContent = `Same recipe for all: ${data.recipe.steps} steps, seed ${data.recipe.seed}, batch `
    + `${data.recipe.batch_size}, width ${data.recipe.width}, ${runs[0].parameters.toLocaleString()} parameters each.`;
  drawTable(runs);
  const Plotly = await loadPlotly();
  await Promise.all([
    Plotly.react(el.ohmExact, [
      { type: 'bar', name: 'held-out exact match', x: names, y: runs.map((r) => r.heldout_exact) },
      { type: 'bar', name: 'train exact match', x: names, y: runs.map((r) => r.train_exact) },
    ], { title: { text: 'Exact match' }, barmode: 'group', yaxis: { range: [0, 1] }, margin: { t: 40 } }, PLOT),
    Plotly.react(el.ohmLoss, runs.map((r, i) => ({ type: 'scatter', mode: 'lines', name: names[i],
      x: r.loss.map((p) => p[0]), y: r.loss.map((p) => p[1]) })),
    { title: { text: 'Training loss' }, xaxis: { title: { text: 'step' } }, yaxis: { type: 'log' }, margin: { t: 40 } }, PLOT),
    Plotly.react(el.ohmSpread, [
      { type: 'bar', name: 'gradient-norm CV (std / mean)', x: names, y: runs.map((r) => r.grad_norm.cv) },
    ], { title: { text: 'How steady training was (lower: steadier)' }, margin: { t: 40 } }, PLOT),
  ]);
  el.ohmGrids.replaceChildren();
  for (const [heads, example] of Object.entries(data.examples || {})) {
    const box = make('div', { className: 'ohm-grid', attrs: { 'data-heads': heads } });
    box.append(make('h3', { text: `${heads} head${heads === '1' ? '' : 's'}: "${example.output_text}"` }));
    const grids = make('div');
    const detail = make('figure', { className: 'ohm-detail' });
    box.append(grids, detail);
    el.ohmGrids.append(box);
    const result = exampleResult(example);
    const open = (kind, layer, head) => drawDetail(detail, result, kind, layer, head);
    drawGrids(grids, result, {}, { onOpen: open, onHover: () => {}, roles: () => [] });
    for (const [kind, kd] of Object.entries(result.kinds)) { // fixed-size columns: one head must not fill the width
      const grid = grids.querySelector(`section[data-kind="${CSS.escape(kind)}"] .grid`);
      if (grid) grid.style.gridTemplateColumns = `auto repeat(${kd.H}, ${THUMB_PX}px)`;
    }
    const [first] = Object.keys(result.kinds);
    open(first, 0, 0);
  }
  el.ohmGrids.dataset.state = 'ready';
}

// The clicked head, large, with the example's tokens on both axes (the layout names which: rows are queries).
function drawDetail(figure, result, kind, layer, head) {
  const view = makeView(result.kinds[kind], result);
  const matrix = view.matrix(layer, head);
  const canvas = make('canvas', { className: 'ohm-matrix', attrs: { 'data-kind': kind, 'data-layer': layer,
    'data-head': head, 'aria-label': `${kind} ${headName(layer, head)} with its tokens` } });
  canvas.dataset.rows = JSON.stringify(view.rows);
  canvas.dataset.cols = JSON.stringify(view.cols);
  drawMatrix(canvas, { matrix, rows: view.rows, cols: view.cols, zmax: colourMax(view, matrix).max });
  canvas.style.maxWidth = '100%'; // a phone's width: scaled down, never scrolled sideways
  canvas.style.height = 'auto';
  const caption = make('figcaption', { className: 'hint', text: `${kind} ${headName(layer, head)}: rows are the `
    + `queries (${result.kinds[kind].layout.rows}), columns the keys (${result.kinds[kind].layout.columns}). `
    + 'Click another square to draw it here.' });
  figure.replaceChildren(canvas, caption);
}

// What the numbers support, as the study's document says it (the answer's `conclusions`, from `conclusions_from`).
function drawConclusions(record) {
  el.ohmConclusions.replaceChildren(...(record.conclusions || []).map(({ claim, text }) => {
    const item = make('li');
    if (claim) item.append(make('strong', { text: `${claim}: ` }));
    item.append(text);
    return item;
  }));
  el.ohmConclusionsFrom.textContent = record.conclusions_from ? `From ${record.conclusions_from}, beside the table.` : '';
}

register(import.meta.url, { draw });
