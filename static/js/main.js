// The page: reads its state from the URL, runs the analysis, draws the grid and the views.
// State in the URL (?text=&model=&layer=&head=&kind=&tab=&words=&nospecial=&step=) means any
// view can be shared, bookmarked and tested. With tab=mechanism, kind/layer/head (and query) name the
// head that tab explains, and no detail dialog opens.
import { el, make } from './dom.js';
import { ApiError, fetchAttention } from './api.js';
import { drawGrids, headName, highlightRow } from './grid.js';
import { drawHeatmap, loadPlotly } from './heatmap.js';
import { drawHeadMap, drawHeadTable, drawSimilarity, drawCompareHeads, drawCompareTexts, fillKindSelects, hasCorpus, setupCorpus } from './heads.js';
import { drawMechanism, mech, setupMechanism } from './mechanism.js';
import { drawPlayground, setupPlayground } from './playground.js';

const state = { text: '', model: el.model.value, truncate: false, layer: null, head: null, kind: null,
  tab: 'grid', words: false, nospecial: false, step: null, gen: null };
let result = null; // the last /api/attention answer, decoded
let views = {}; // kind -> view of the grid (after the word / special-token options)
let controller = null;

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
  state.words = q.get('words') === '1';
  state.nospecial = q.get('nospecial') === '1';
  state.step = int('step');
}

function writeState() {
  const q = new URLSearchParams();
  if (state.text) q.set('text', state.text);
  q.set('model', state.model);
  if (state.truncate) q.set('truncate', '1');
  if (state.tab !== 'grid') q.set('tab', state.tab);
  if (state.words) q.set('words', '1');
  if (state.nospecial) q.set('nospecial', '1');
  const open = state.tab === 'mechanism' ? mech : state;
  if (open.kind !== null && open.layer !== null && open.head !== null) {
    q.set('kind', open.kind);
    q.set('layer', open.layer);
    q.set('head', open.head);
  }
  if (state.tab === 'mechanism' && mech.query !== null) q.set('query', mech.query);
  if (state.step !== null) q.set('step', state.step);
  if (state.gen !== null) q.set('gen', state.gen);
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
    result = await fetchAttention({ ...state, generation: generation?.kind, newTokens: state.gen }, controller.signal);
  } catch (e) {
    if (e.name === 'AbortError') return;
    document.body.dataset.state = 'error';
    setStatus(e instanceof ApiError ? e.message : `Error: ${e.message}`, 'error');
    return;
  }
  drawAll();
  const ms = performance.now() - started;
  document.body.dataset.paintMs = ms.toFixed(1);
  document.body.dataset.state = 'ready';
  const n = result.tokens.length;
  const first = Object.values(result.kinds)[0];
  setStatus(`${n} tokens · ${first.L} layers × ${first.H} heads${result.truncated ? ' · text cut to fit' : ''} · ${ms.toFixed(0)} ms`);
  writeState();
  if (!(state.kind in result.kinds)) state.kind = Object.keys(result.kinds)[0];
  if (state.layer !== null && state.head !== null && state.layer < result.kinds[state.kind].L
      && state.head < result.kinds[state.kind].H) {
    openDetail(state.kind, state.layer, state.head);
  }
}

function drawAll() {
  views = drawGrids(el.grids, result, { words: state.words, nospecial: state.nospecial },
    { onOpen: openDetail, onHover: showHoverName, roles });
  const notes = [...new Set(Object.values(views).map((v) => v.note).filter(Boolean))];
  el.transformLabel.textContent = notes.length ? `Transformed view: ${notes.join('; ')}` : '';
  fillKindSelects(Object.keys(result.kinds));
  drawOutput();
  drawTab();
}

function showHoverName(kind, layer, head) {
  const r = roles(kind, layer, head);
  el.hoverName.textContent = `${headName(layer, head)} (${kind})${r.length ? ': ' + r.join(', ') : ''}`;
}

// ---- generation steps (models with a decoder) -------------------------------------------------

// Kinds whose rows are the decoder's output positions: the step slider highlights one of them.
const outputRowViews = () => Object.values(views).filter((v) => v.layout.rows === 'output_tokens');

function drawOutput() {
  const rows = result.output_tokens;
  const continuation = result.generated && result.generated.some(Boolean);
  el.output.hidden = !rows && !continuation;
  el.stepControl.hidden = !rows;
  el.outputLabel.textContent = rows ? 'Output:' : 'Text and its continuation (generated tokens marked):';
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
  el.outputText.replaceChildren(...rows.slice(1).map((t, i) =>
    make('span', { text: t, className: i === row ? 'current' : i < row ? 'done' : 'todo' })));
  for (const view of outputRowViews()) highlightRow(el.grids, view, row);
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

async function drawDetail() {
  const view = views[state.kind];
  if (!view) return;
  const { layer, head } = state;
  const name = headName(layer, head);
  el.detailTitle.textContent = `${name} · ${state.kind}`;
  el.detailRoles.replaceChildren(...roles(state.kind, layer, head).map((r) => make('span', { text: r, className: 'badge' })));
  const matrix = view.matrix(layer, head);
  const zmax = matrix.reduce((a, b) => Math.max(a, b), 0);
  el.detailNote.textContent = [view.note && `Transformed view: ${view.note}.`,
    `Rows are queries, columns keys. Colour from 0 to this head's largest weight, ${zmax.toFixed(3)}; page values are 8-bit (within ${(zmax / 510).toFixed(4)}), the API's json format gives exact floats.`]
    .filter(Boolean).join(' ');
  const highlight = state.step !== null && view.layout.rows === 'output_tokens' ? state.step - 1 : -1;
  try {
    await drawHeatmap(el.heatmap, { matrix, rows: view.rows, cols: view.cols, title: `${name} ${state.kind}`, zmax, highlightRow: highlight });
    el.heatmap.dataset.head = name;
    el.heatmap.dataset.kind = state.kind;
  } catch (e) {
    setStatus(`Cannot draw the heatmap: ${e.message}`, 'error');
  }
}

function closeDetail() {
  if (el.detail.open) el.detail.close();
  state.layer = state.head = null;
  writeState();
}

function step(dLayer, dHead) {
  const view = views[state.kind];
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

function exportCsv() {
  const view = views[state.kind];
  const m = view.matrix(state.layer, state.head);
  const lines = [['query \\ key', ...view.cols].map(csvCell).join(',')];
  view.rows.forEach((r, i) => lines.push([csvCell(r), ...Array.from(m.subarray(i * view.C, (i + 1) * view.C), (v) => v.toFixed(4))].join(',')));
  download(`${headName(state.layer, state.head)}-${state.kind}.csv`, lines.join('\n') + '\n', 'text/csv');
}

async function exportImage(format) {
  const Plotly = await loadPlotly();
  Plotly.downloadImage(el.heatmap, { format, filename: `${headName(state.layer, state.head)}-${state.kind}`, width: 900, height: 800 });
}

// ---- tabs ----------------------------------------------------------------------------------------

function showTab(tab) {
  state.tab = tab;
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
  similarity: { draw: drawSimilarity, ready: () => result },
  mechanism: { draw: drawMechanism, ready: () => result },
  playground: { draw: drawPlayground, ready: () => true },
};

function drawTab() {
  const tab = TABS[state.tab];
  if (!tab || !tab.ready()) return;
  tab.draw({ result, views, state, openDetail, setStatus, writeState, generation: result && modelGeneration(result.model),
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
  for (const [box, key] of [[el.optWords, 'words'], [el.optNospecial, 'nospecial']]) {
    box.addEventListener('change', () => {
      state[key] = box.checked;
      writeState();
      if (result) { drawAll(); if (el.detail.open) drawDetail(); }
    });
  }
  el.model.addEventListener('change', () => { state.gen = null; showGenerationControl(); });
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
  setupPlayground();
  el.compareHeads.addEventListener('click', () => drawCompareHeads({ result, views, state, setStatus }));
  el.compareTexts.addEventListener('click', () => drawCompareTexts({ result, views, state, setStatus }));
  for (const select of [el.mapMetric, el.mapKind, el.mapSource, el.tableKind, el.tableSource, el.similarityKind]) {
    select.addEventListener('change', drawTab);
  }
  setupCorpus(drawTab);
}

function start() {
  readState();
  el.text.value = state.text;
  el.model.value = state.model;
  el.truncate.checked = state.truncate;
  showGenerationControl();
  el.optWords.checked = state.words;
  el.optNospecial.checked = state.nospecial;
  wire();
  showTab(state.tab);
  document.body.dataset.state = 'idle';
  document.body.dataset.readyMs = performance.now().toFixed(1); // page interactive, for bench/page.py
  if (state.text.trim()) analyze();
}

start();
