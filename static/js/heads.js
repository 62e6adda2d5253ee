// Comparing heads: head map, sortable table, similarity, side-by-side compare, corpus runs.
import { el, make } from './dom.js';
import { fetchAttention, fetchCorpus } from './api.js';
import { DIVERGING, sequentialColor } from './colors.js';
import { drawHeatmap, loadPlotly } from './heatmap.js';
import { headName } from './grid.js';
import { makeView } from './views.js';

const corpora = new Map(); // model name -> its last corpus result {model, sentences, errors, heads}
const sort = { key: 'name', descending: false };
const maxCorpusLines = () => +el.tabCorpus.dataset.maxTexts; // the server's limit, from GET /api/models

export function fillKindSelects(kinds) {
  for (const select of document.querySelectorAll('.kind-select')) {
    const current = select.value;
    select.replaceChildren(...kinds.map((k) => make('option', { text: k, attrs: { value: k } })));
    if (kinds.includes(current)) select.value = current;
  }
}

// The corpus result of the model in the picker (a corpus of another model has other heads).
const currentCorpus = () => corpora.get(el.model.value) || null;
export const hasCorpus = () => currentCorpus() !== null;

function fillSources(result) {
  const corpus = currentCorpus();
  for (const select of document.querySelectorAll('.source-select')) {
    const current = select.value || 'sentence';
    const options = [];
    if (result) options.push(make('option', { text: `this sentence (${result.tokens.length} tokens)`, attrs: { value: 'sentence' } }));
    if (corpus) options.push(make('option', { text: `corpus average (${corpus.sentences} sentences)`, attrs: { value: 'corpus' } }));
    select.replaceChildren(...options);
    if ([...select.options].some((o) => o.value === current)) select.value = current;
  }
}

// Head records of the chosen source and kind: [{layer, head, name, metrics, roles}].
function records(result, source, kind) {
  const corpus = currentCorpus();
  const data = source === 'corpus' && corpus ? corpus : result;
  return data?.heads?.[kind] || [];
}

function metricNames(list) {
  return list.length ? Object.keys(list[0].metrics) : [];
}

// A result of the model in the picker that has this kind (an own property: never 'constructor').
const hasKind = (result, kind) => !!result && result.model === el.model.value && Object.hasOwn(result.kinds, kind);

const fmt = (v) => (v === null || v === undefined ? 'n/a' : v.toFixed(3));

export function drawHeadMap({ result, openDetail }) {
  fillSources(result);
  if (!el.mapKind.options.length) fillKindSelects(Object.keys(currentCorpus().heads));
  const kind = el.mapKind.value || el.mapKind.options[0]?.value;
  const list = records(result, el.mapSource.value, kind);
  const names = metricNames(list);
  if (el.mapMetric.options.length !== names.length) {
    el.mapMetric.replaceChildren(...names.map((m) => make('option', { text: m, attrs: { value: m } })));
    el.mapMetric.value = names.includes('previous_token') ? 'previous_token' : names[0];
  }
  const metric = el.mapMetric.value;
  const values = list.map((r) => r.metrics[metric]).filter((v) => v !== null);
  const lo = Math.min(...values), hi = Math.max(...values);
  const H = Math.max(...list.map((r) => r.head)) + 1;
  const grid = make('div', { className: 'map-grid' });
  grid.style.gridTemplateColumns = `auto repeat(${H}, 1fr)`;
  grid.append(make('span'));
  for (let h = 0; h < H; h++) grid.append(make('span', { text: `H${h}`, className: 'axis' }));
  for (const r of list) {
    if (r.head === 0) grid.append(make('span', { text: `L${r.layer}`, className: 'axis' }));
    const v = r.metrics[metric];
    const cell = make('button', {
      text: fmt(v), className: 'map-cell',
      attrs: { type: 'button', 'data-layer': r.layer, 'data-head': r.head, 'data-value': v ?? '',
        title: `${r.name} ${metric} = ${fmt(v)}${r.roles.length ? ` · ${r.roles.join(', ')}` : ''}` },
    });
    if (v === null) cell.classList.add('undefined');
    else {
      const t = hi > lo ? (v - lo) / (hi - lo) : 0.5;
      cell.style.background = sequentialColor(t);
      cell.style.color = t > 0.55 ? '#fff' : '#000';
    }
    cell.addEventListener('click', () => hasKind(result, kind) && openDetail(kind, r.layer, r.head));
    grid.append(cell);
  }
  const legend = make('p', { className: 'hint', text: values.length
    ? `${metric}: lightest ${fmt(lo)}, darkest ${fmt(hi)}.` : `${metric} is undefined for every head here.` });
  el.headMap.replaceChildren(legend, grid);
}

export function drawHeadTable({ result, openDetail }) {
  fillSources(result);
  if (!el.tableKind.options.length) fillKindSelects(Object.keys(currentCorpus().heads));
  const kind = el.tableKind.value || el.tableKind.options[0]?.value;
  const list = [...records(result, el.tableSource.value, kind)];
  const names = metricNames(list);
  const value = (r) => (sort.key === 'name' ? r.layer * 1000 + r.head : sort.key === 'roles' ? r.roles.join(' ') : r.metrics[sort.key]);
  list.sort((a, b) => {
    const va = value(a), vb = value(b);
    if (va === null) return 1;
    if (vb === null) return -1;
    const c = va < vb ? -1 : va > vb ? 1 : 0;
    return sort.descending ? -c : c;
  });
  const thead = el.headTable.tHead, tbody = el.headTable.tBodies[0];
  const header = make('tr');
  for (const key of ['name', 'roles', ...names]) {
    const arrow = sort.key === key ? (sort.descending ? ' ▼' : ' ▲') : '';
    const th = make('th', { attrs: { 'data-key': key, 'aria-sort': sort.key === key ? (sort.descending ? 'descending' : 'ascending') : 'none' } });
    const button = make('button', { text: (key === 'name' ? 'head' : key) + arrow, attrs: { type: 'button' } });
    button.addEventListener('click', () => {
      sort.descending = sort.key === key ? !sort.descending : key !== 'name';
      sort.key = key;
      drawHeadTable({ result, openDetail });
    });
    th.append(button);
    header.append(th);
  }
  thead.replaceChildren(header);
  tbody.replaceChildren(...list.map((r) => {
    const tr = make('tr', { attrs: { 'data-layer': r.layer, 'data-head': r.head } });
    tr.append(make('td', { text: r.name }));
    const roles = make('td');
    roles.append(...r.roles.map((role) => make('span', { text: role, className: 'badge' })));
    tr.append(roles);
    for (const m of names) tr.append(make('td', { text: fmt(r.metrics[m]), className: 'num', attrs: { 'data-key': m } }));
    tr.addEventListener('click', () => hasKind(result, kind) && openDetail(kind, r.layer, r.head));
    return tr;
  }));
}

export async function drawSimilarity({ result, state, setStatus }) {
  const kind = el.similarityKind.value || el.similarityKind.options[0]?.value;
  if (!result.similarity) {
    setStatus('Computing head similarity…');
    try {
      const withSimilarity = await fetchAttention({ ...state, similarity: true });
      result.similarity = withSimilarity.similarity;
    } catch (e) {
      setStatus(e.message, 'error');
      return;
    }
    setStatus(`Head similarity of ${result.tokens.length} tokens.`);
  }
  const sim = result.similarity[kind];
  const order = sim.order;
  const labels = order.map((i) => sim.heads[i]);
  const matrix = new Float32Array(order.length * order.length);
  order.forEach((a, i) => order.forEach((b, j) => { matrix[i * order.length + j] = sim.distance[a][b]; }));
  await drawHeatmap(el.similarityPlot, { matrix, rows: labels, cols: labels, title: `Head distance (${kind}), clustered`,
    zmax: Math.max(...matrix), colorbarTitle: 'Hellinger distance', xTitle: 'head', yTitle: 'head', joiner: ' vs ' });
  el.similarityPlot.dataset.order = labels.join(' ');
  if (!el.similarityPlot.dataset.clicks) {
    el.similarityPlot.dataset.clicks = '1';
    el.similarityPlot.on('plotly_click', (event) => {
      const p = event.points[0];
      const rows = el.similarityPlot.dataset.order.split(' ');
      el.compareA.value = rows[p.y];
      el.compareB.value = rows[p.x];
      document.querySelector('#tabs [data-tab="compare"]').click();
      el.compareHeads.click();
    });
  }
}

function parseHead(text, view) {
  const m = /^\s*L(\d+)\s*H(\d+)\s*$/i.exec(text || '');
  if (!m || +m[1] >= view.L || +m[2] >= view.H) return null;
  return { layer: +m[1], head: +m[2] };
}

function plotBox(title) {
  const box = make('div', { className: 'compare-box' });
  const div = make('div', { className: 'plot' });
  box.append(div);
  el.comparePlots.append(box);
  return { div, title };
}

export async function drawCompareHeads({ result, views, state, setStatus }) {
  if (!result) return setStatus('Analyze a text first.', 'error');
  const kind = el.compareKind.value || Object.keys(views)[0];
  const view = views[kind];
  const a = parseHead(el.compareA.value, view), b = parseHead(el.compareB.value, view);
  if (!a || !b) return setStatus(`Name two heads like L0H2, with layer < ${view.L} and head < ${view.H}.`, 'error');
  const ma = view.matrix(a.layer, a.head), mb = view.matrix(b.layer, b.head);
  const diff = ma.map((v, i) => v - mb[i]);
  const zmax = Math.max(...ma, ...mb);
  const dmax = Math.max(1e-6, ...diff.map(Math.abs));
  el.comparePlots.replaceChildren();
  const na = headName(a.layer, a.head), nb = headName(b.layer, b.head);
  const boxes = [plotBox(na), plotBox(nb), plotBox(`${na} − ${nb}`)];
  await loadPlotly();
  await Promise.all([
    drawHeatmap(boxes[0].div, { matrix: ma, rows: view.rows, cols: view.cols, title: `${na} (${kind})`, zmax,
      colorbarTitle: result.weights.label }),
    drawHeatmap(boxes[1].div, { matrix: mb, rows: view.rows, cols: view.cols, title: `${nb} (${kind})`, zmax,
      colorbarTitle: result.weights.label }),
    drawHeatmap(boxes[2].div, { matrix: diff, rows: view.rows, cols: view.cols, title: `${na} − ${nb}`,
      zmin: -dmax, zmax: dmax, colorscale: DIVERGING, colorbarTitle: 'difference' }),
  ]);
  el.comparePlots.dataset.compared = `${na} ${nb}`;
  setStatus(`Comparing ${na} and ${nb}${view.note ? ` (${view.note})` : ''}.`);
}

export async function drawCompareTexts({ result, views, state, setStatus }) {
  if (!result) return setStatus('Analyze a text first.', 'error');
  const kind = el.compareKind.value || Object.keys(views)[0];
  const view = views[kind];
  const a = parseHead(el.compareA.value, view);
  if (!a) return setStatus(`Name head A like L0H2, with layer < ${view.L} and head < ${view.H}.`, 'error');
  const text = el.compareText.value;
  if (!text.trim()) return setStatus('Type a second sentence.', 'error');
  let other;
  try {
    other = await fetchAttention({ text, model: result.model, truncate: state.truncate, weights: result.weights.name });
  } catch (e) {
    return setStatus(e.message, 'error');
  }
  const otherView = makeView(other.kinds[kind], other, { words: state.words, nospecial: state.nospecial });
  const name = headName(a.layer, a.head);
  el.comparePlots.replaceChildren();
  const boxes = [plotBox(), plotBox()];
  await loadPlotly();
  const m1 = view.matrix(a.layer, a.head), m2 = otherView.matrix(a.layer, a.head);
  const zmax = Math.max(...m1, ...m2);
  await Promise.all([
    drawHeatmap(boxes[0].div, { matrix: m1, rows: view.rows, cols: view.cols, title: `${name} on sentence 1`, zmax,
      colorbarTitle: result.weights.label }),
    drawHeatmap(boxes[1].div, { matrix: m2, rows: otherView.rows, cols: otherView.cols, title: `${name} on sentence 2`, zmax,
      colorbarTitle: result.weights.label }),
  ]);
  el.comparePlots.dataset.compared = `${name} on two sentences`;
  setStatus(`${name} on two sentences.`);
}

// `onDone()` runs after a corpus result arrives (to redraw the head map or table).
export function setupCorpus(onDone) {
  let controller = null;
  el.corpusFile.addEventListener('change', async () => {
    const file = el.corpusFile.files[0];
    if (file) el.corpusText.value = await file.text();
  });
  el.corpusCancel.addEventListener('click', () => controller?.abort());
  el.corpusRun.addEventListener('click', async () => {
    // Non-blank lines, each with its line number in what was pasted, for error messages.
    const numbered = el.corpusText.value.split(/\r?\n/).map((text, i) => ({ text: text.trim(), line: i + 1 }))
      .filter((l) => l.text);
    const lines = numbered.map((l) => l.text);
    if (!lines.length) return (el.corpusStatus.textContent = 'Paste sentences, one per line, or choose a file.');
    if (lines.length > maxCorpusLines()) {
      el.corpusStatus.textContent = `${lines.length} lines: the limit is ${maxCorpusLines()} per run.`;
      return;
    }
    controller = new AbortController();
    el.corpusRun.disabled = true;
    el.corpusCancel.disabled = false;
    el.corpusProgress.max = lines.length;
    el.corpusProgress.value = 0;
    el.corpusStatus.textContent = `0 / ${lines.length}`;
    document.body.dataset.corpus = 'running';
    try {
      const model = el.model.value;
      const corpus = await fetchCorpus({ texts: lines, model }, (done, total) => {
        el.corpusProgress.max = total;
        el.corpusProgress.value = done;
        el.corpusStatus.textContent = `${done} / ${total}`;
      }, controller.signal);
      corpora.set(model, corpus);
      const skipped = corpus.errors.length ? `; ${corpus.errors.length} skipped (first: line ${numbered[corpus.errors[0].index].line}, ${corpus.errors[0].error})` : '';
      el.corpusProgress.value = el.corpusProgress.max;
      el.corpusStatus.textContent = `${corpus.sentences} sentences averaged with ${model}${skipped}. See Head map and Table.`;
      document.body.dataset.corpus = 'done';
      fillSources(null);
      for (const select of document.querySelectorAll('.source-select')) select.value = 'corpus';
      onDone();
    } catch (e) {
      el.corpusStatus.textContent = e.name === 'AbortError' ? 'Cancelled.' : e.message;
      document.body.dataset.corpus = e.name === 'AbortError' ? 'cancelled' : 'error';
    } finally {
      el.corpusRun.disabled = false;
      el.corpusCancel.disabled = true;
    }
  });
}
