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
const percent = (share) => `${Math.round(share * 100)}%`;

// What the Table's and Head map's numbers are, said in the tab: whose they are (this one text, or the
// means of a corpus) and what they are computed on. They come from the server, on tokens: `sink`,
// `first_token`, `last_token` and `confidence` on the raw weights, every other metric with special
// tokens left out and rows renormalised (docs/metrics.md). Merging words would change them, so when the
// view's options are on, the note says plainly that these numbers do not follow them.
function showBasis(node, source, options, corpus) {
  const whose = source === 'corpus' && corpus
    ? `Means over ${corpus.sentences} sentences (hover a value for its spread); roles of those means, each with the share of sentences on which it fired.`
    : 'Numbers and roles of this one text: an anecdote. Run a corpus (Corpus tab) before saying what a head does.';
  const what = 'Computed on tokens: sink, first_token, last_token and confidence on the raw attention, every other '
    + 'metric with special tokens left out and rows renormalised.';
  const on = [options?.words && 'words', options?.nospecial && 'hide special tokens'].filter(Boolean);
  const raw = on.length ? ` These numbers do not follow the view's options (${on.join(', ')}): they stay computed on the tokens as just said.` : '';
  node.textContent = `${whose} ${what}${raw}`;
  node.dataset.raw = on.length ? '1' : '';
  node.dataset.source = source === 'corpus' && corpus ? 'corpus' : 'sentence';
}

// A head's role badges: on a corpus, each with the share of sentences on which it fired.
function roleBadges(r) {
  return r.roles.map((role) => make('span', { text: r.role_share ? `${role} ${percent(r.role_share[role])}` : role,
    className: 'badge', attrs: { 'data-role': role } }));
}

// A value's tooltip: on a corpus, mean ± std over the n sentences where it is defined.
const spread = (r, m) => (r.std ? `${fmt(r.metrics[m])} ± ${fmt(r.std[m])} over ${r.n[m]} sentences` : fmt(r.metrics[m]));

export function drawHeadMap({ result, openDetail, options }) {
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
        title: `${r.name} ${metric} = ${spread(r, metric)}${r.roles.length ? ` · ${r.roles.join(', ')}` : ''}` },
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
  showBasis(el.mapBasis, el.mapSource.value, options, currentCorpus());
}

export function drawHeadTable({ result, openDetail, options }) {
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
    const label = key === 'name' ? 'head' : key === 'roles' ? (list[0]?.role_share ? 'roles (corpus means)' : 'roles (this text)') : key;
    const button = make('button', { text: label + arrow, attrs: { type: 'button' } });
    button.addEventListener('click', () => {
      sort.descending = sort.key === key ? !sort.descending : key !== 'name';
      sort.key = key;
      drawHeadTable({ result, openDetail, options });
    });
    th.append(button);
    header.append(th);
  }
  thead.replaceChildren(header);
  tbody.replaceChildren(...list.map((r) => {
    const tr = make('tr', { attrs: { 'data-layer': r.layer, 'data-head': r.head } });
    tr.append(make('td', { text: r.name }));
    const roles = make('td');
    roles.append(...roleBadges(r));
    tr.append(roles);
    for (const m of names) {
      tr.append(make('td', { text: fmt(r.metrics[m]), className: 'num', attrs: { 'data-key': m, title: spread(r, m) } }));
    }
    tr.addEventListener('click', () => hasKind(result, kind) && openDetail(kind, r.layer, r.head));
    return tr;
  }));
  showBasis(el.tableBasis, el.tableSource.value, options, currentCorpus());
}

// Hellinger distance between every two heads of a transformed view (hidden special tokens, words), as
// headscope/analyses/metrics.py head_distances computes it from the raw weights: d(a, b) = sqrt(1 - mean over rows of
// Σ_k sqrt(a_k b_k)). A row the view leaves empty (it kept under 1% once special tokens were hidden) has no
// distribution to compare: the mean runs over the rows both heads fill (none: d = 1). Returns Float64Array(N·N).
export function viewDistances(view) {
  const N = view.L * view.H, n = view.R * view.C;
  const roots = [], filled = [];
  for (let layer = 0; layer < view.L; layer++) {
    for (let head = 0; head < view.H; head++) {
      const m = view.matrix(layer, head);
      const root = new Float64Array(n), rows = new Uint8Array(view.R);
      for (let i = 0; i < n; i++) { root[i] = Math.sqrt(Math.max(0, m[i])); if (m[i] > 0) rows[Math.floor(i / view.C)] = 1; }
      roots.push(root);
      filled.push(rows);
    }
  }
  const D = new Float64Array(N * N);
  for (let a = 0; a < N; a++) {
    for (let b = a + 1; b < N; b++) {
      let sum = 0, rows = 0;
      for (let r = 0; r < view.R; r++) {
        if (!filled[a][r] || !filled[b][r]) continue;
        rows++;
        for (let c = r * view.C, end = c + view.C; c < end; c++) sum += roots[a][c] * roots[b][c];
      }
      D[a * N + b] = D[b * N + a] = rows ? Math.sqrt(Math.min(1, Math.max(0, 1 - sum / rows))) : 1;
    }
  }
  return D;
}

// Leaf order of average-linkage clustering of D (N·N): the two closest clusters merge, their leaves side by
// side, until one is left (as the server's scipy linkage, without its optimal leaf ordering).
export function averageLinkageOrder(D, N) {
  let clusters = Array.from({ length: N }, (_, i) => [i]);
  const link = (A, B) => { let s = 0; for (const a of A) for (const b of B) s += D[a * N + b]; return s / (A.length * B.length); };
  while (clusters.length > 1) {
    let best = null;
    for (let i = 0; i < clusters.length; i++) {
      for (let j = i + 1; j < clusters.length; j++) {
        const d = link(clusters[i], clusters[j]);
        if (!best || d < best.d) best = { i, j, d };
      }
    }
    const merged = clusters[best.i].concat(clusters[best.j]);
    clusters = clusters.filter((_, k) => k !== best.i && k !== best.j);
    clusters.push(merged);
  }
  return clusters[0] || [];
}

// The similarity the tab draws for one kind: the server's (raw attention, every token) when the view has no
// transform, is a pooled thumbnail grid or holds no probabilities (value norms), else computed here from the
// view's own matrices (Hellinger distance needs rows that are distributions).
function similarityOf(result, view, kind, transformed) {
  if (!view || !transformed || view.pool[0] > 1 || view.pool[1] > 1 || !result.weights.rows_sum_to_one) {
    const sim = result.similarity[kind];
    return { heads: sim.heads, order: sim.order, at: (a, b) => sim.distance[a][b], follows: false };
  }
  const N = view.L * view.H;
  const D = viewDistances(view);
  const heads = Array.from({ length: N }, (_, i) => headName(Math.floor(i / view.H), i % view.H));
  return { heads, order: averageLinkageOrder(D, N), at: (a, b) => D[a * N + b], follows: true };
}

export async function drawSimilarity({ result, views, state, request, setStatus }) {
  fillSources(result);
  if (!el.similarityKind.options.length) fillKindSelects(Object.keys(currentCorpus().heads));
  const kind = el.similarityKind.value || el.similarityKind.options[0]?.value;
  const corpus = el.similaritySource.value === 'corpus' ? currentCorpus() : null;
  if (!corpus && !result.similarity) {
    setStatus('Computing head similarity…');
    try {
      const withSimilarity = await fetchAttention({ ...request, similarity: true }); // the same text, ablation, generation
      result.similarity = withSimilarity.similarity;
    } catch (e) {
      setStatus(e.message, 'error');
      return;
    }
    setStatus(`Head similarity of ${result.tokens.length} tokens.`);
  }
  const view = corpus ? null : views?.[kind];
  const sim = corpus ? similarityOf(corpus, null, kind, false) : similarityOf(result, view, kind, state.words || state.nospecial);
  const order = sim.order;
  const labels = order.map((i) => sim.heads[i]);
  const matrix = new Float32Array(order.length * order.length);
  order.forEach((a, i) => order.forEach((b, j) => { matrix[i * order.length + j] = sim.at(a, b); }));
  el.similarityBasis.textContent = corpus
    ? `Corpus of ${corpus.sentences} sentences: the root mean square over every query row of every sentence, raw attention `
      + 'of every token, special tokens included; computed by the server. The view\'s options do not apply to it.'
    : sim.follows
    ? `Follows the view: computed in the page from the weights as drawn (${view.note}), over the rows both heads fill; average-linkage order.`
    : `Raw attention of every token, special tokens included${view && (view.pool[0] > 1 || view.pool[1] > 1) && (state.words || state.nospecial)
      ? ' (thumbnail grid: the word and special-token options apply only to an opened head)' : ''}; computed by the server.`;
  el.similarityBasis.dataset.raw = (state.words || state.nospecial) && !sim.follows ? '1' : '';
  const what = corpus ? `, corpus of ${corpus.sentences}` : sim.follows ? ', as the view shows it' : ', raw attention';
  await drawHeatmap(el.similarityPlot, { matrix, rows: labels, cols: labels,
    title: `Head distance (${kind}${what}), clustered`,
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

export async function drawCompareTexts({ result, views, state, request, setStatus }) {
  if (!result) return setStatus('Analyze a text first.', 'error');
  const kind = el.compareKind.value || Object.keys(views)[0];
  const view = views[kind];
  const a = parseHead(el.compareA.value, view);
  if (!a) return setStatus(`Name head A like L0H2, with layer < ${view.L} and head < ${view.H}.`, 'error');
  const text = el.compareText.value;
  if (!text.trim()) return setStatus('Type a second sentence.', 'error');
  let other;
  try {
    other = await fetchAttention({ ...request, text }); // as the first text was asked: weights, ablation, generation
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
