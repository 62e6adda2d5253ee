// The Similarity tab: the Hellinger distance between every two heads, clustered so alike heads stand together;
// the server's (raw attention), a corpus's, or computed here from the view as drawn (words, hidden special
// tokens). A click on a cell compares the two heads in the Compare tab.
import { elements } from '../lib/dom.js';
import { fetchAttention } from '../lib/api.js';
import { drawHeatmap } from '../lib/heatmap.js';
import { headName } from '../lib/grid.js';
import { currentCorpus, fillKindSelect, fillSources, hasCorpus } from '../lib/sources.js';
import { register } from '../lib/registry.js';

const el = elements(['similarity-kind', 'similarity-source', 'similarity-basis', 'similarity-plot']);

function setup(page) {
  for (const select of [el.similarityKind, el.similaritySource]) select.addEventListener('change', page.redraw);
}

const ready = (page) => !!page.result || hasCorpus();

function analysed(page) {
  if (page.result) fillKindSelect(el.similarityKind, Object.keys(page.result.kinds));
}

// Hellinger distance between every two heads of a transformed view (hidden special tokens, words), as
// headscope/analyses/metrics.py head_distances computes it from the raw weights: d(a, b) = sqrt(1 - mean over rows of
// Σ_k sqrt(a_k b_k)). A row the view leaves empty (it kept under 1% once special tokens were hidden) has no
// distribution to compare: the mean runs over the rows both heads fill (none: d = 1). Returns Float64Array(N·N).
function viewDistances(view) {
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
function averageLinkageOrder(D, N) {
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

async function draw({ result, views, state, request, setStatus, showTab }) {
  fillSources(result);
  if (!el.similarityKind.options.length) fillKindSelect(el.similarityKind, Object.keys(currentCorpus().heads));
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
      const compare = elements(['compare-a', 'compare-b', 'compare-heads']); // the Compare tab's, when there is one
      if (!compare.compareA || !showTab('compare')) return;
      compare.compareA.value = rows[p.y];
      compare.compareB.value = rows[p.x];
      compare.compareHeads.click();
    });
  }
}

register(import.meta.url, { setup, ready, analysed, draw });
