// The Mechanism tab: how one head computes its attention for one query token, every step drawn as a
// small heatmap with its shape (POST /api/explain). The selection (kind, layer, head, query) lives in
// `mech` and in the URL (?tab=mechanism&kind=&layer=&head=&query=); it starts from the last head opened in the
// detail dialog, whose Mechanism button opens this tab.
import { el as shell, elements, make } from '../lib/dom.js';
import { ApiError, fetchExplain } from '../lib/api.js';
import { DIVERGING, SEQUENTIAL, textColorOn } from '../lib/colors.js';
import { escapeLabel, loadPlotly, thinTicks } from '../lib/heatmap.js';
import { visible } from '../lib/views.js';
import { register } from '../lib/registry.js';

const el = elements(['mech-kind', 'mech-layer', 'mech-head', 'mech-query', 'mech-status', 'mech-params', 'mech-steps']);
const mech = { kind: null, layer: null, head: null, query: null };
let controller = null;
let drawn = ''; // the selection last drawn, so a redraw of the tab does not refetch it

const dims = (n) => [...Array(n).keys()].map(String);
const fmtShape = (s) => `[${s.join(', ')}]`;

// Every step, in the order the head computes it. `plot(e)` gives the heatmap of the answer `e`.
const STEPS = [
  { key: 'x', title: 'x: the layer\'s input, every query token',
    about: 'What the Q projection reads (and K, V in self-attention): the layer input, after the block\'s normalisation (LayerNorm, or RMSNorm in Llama) where it comes first.',
    plot: (e) => ({ z: e.x, rows: e.query_tokens, cols: dims(e.d_model), highlightRow: e.query, xTitle: 'd_model' }) },
  { key: 'context', title: 'context: what K and V read (cross-attention)', when: (e) => e.context,
    about: 'The encoder output: keys and values come from it, queries from x.',
    plot: (e) => ({ z: e.context, rows: e.key_tokens, cols: dims(e.d_model), xTitle: 'd_model' }) },
  { key: 'q', title: (e) => `q_i = x_i W_Q${e.biases.qkv ? ' + b_Q' : ''}, this head's slice${e.rotary ? ', then rotated by position (RoPE)' : ''}`,
    about: 'The query of token i in this head: D numbers.',
    plot: (e) => ({ z: [e.q], rows: [e.query_tokens[e.query]], cols: dims(e.d_head), xTitle: 'd_head' }) },
  { key: 'k', title: (e) => `k_j = x_j W_K${e.biases.qkv ? ' + b_K' : ''}, every key${e.rotary ? ', rotated by position (RoPE)' : ''}${e.kv_heads < e.heads ? ` (key/value head ${e.kv_group}, shared by query heads ${e.kv_group_heads.join(', ')})` : ''}`,
    about: 'One key per token of the columns: D numbers each.',
    plot: (e) => ({ z: e.k, rows: e.key_tokens, cols: dims(e.d_head), xTitle: 'd_head' }) },
  { key: 'qk', title: 'q_i ⊙ k_j: which dimensions make a score',
    about: 'Elementwise products; row j sums to q_i · k_j, so its strong cells are the dimensions that make that score large.',
    plot: (e) => ({ z: e.qk, rows: e.key_tokens, cols: dims(e.d_head), xTitle: 'd_head' }) },
  { key: 'position_bias', title: 'position bias: added to the scores', when: (e) => e.position_bias,
    about: 'A learned bias per head and relative distance between query and key (T5), added before the softmax.',
    plot: (e) => ({ z: [e.position_bias], rows: [e.query_tokens[e.query]], cols: e.key_tokens, xTitle: 'key', cellText: true }) },
  { key: 'scores', title: (e) => `scores = q_i · k_j ${Math.abs(e.scale - 1 / Math.sqrt(e.d_head)) < 1e-6 ? '/ √D' : `× ${e.scale}`}${e.position_bias ? ' + position bias' : ''}, masked`,
    about: 'Masked keys (causal: later tokens; padding) get −∞, drawn grey: the softmax gives them 0.',
    plot: (e) => ({ z: [e.scores], rows: [e.query_tokens[e.query]], cols: e.key_tokens, masked: e.masked, xTitle: 'key', cellText: true }) },
  { key: 'weights', title: 'weights = softmax(scores): row i of the pattern',
    about: 'They sum to 1: how much of each value token i takes.',
    plot: (e) => ({ z: [e.weights], rows: [e.query_tokens[e.query]], cols: e.key_tokens, sequential: true, xTitle: 'key', cellText: true }) },
  { key: 'v', title: (e) => `v_j = x_j W_V${e.biases.qkv ? ' + b_V' : ''}, every value`,
    about: 'What each key token hands on, if attended to.',
    plot: (e) => ({ z: e.v, rows: e.key_tokens, cols: dims(e.d_head), xTitle: 'd_head' }) },
  { key: 'z', title: 'z_i = Σ_j weight_j v_j',
    about: 'This head\'s result for token i: the weighted sum of the values.',
    plot: (e) => ({ z: [e.z], rows: [e.query_tokens[e.query]], cols: dims(e.d_head), xTitle: 'd_head' }) },
  { key: 'heads_z', title: 'heads_z: every head\'s z_i concatenated',
    about: 'Head h fills dimensions h·D to (h+1)·D − 1; this head is outlined.',
    plot: (e) => ({ z: [e.heads_z], rows: [e.query_tokens[e.query]], cols: dims(e.d_model), xTitle: 'd_model', band: [e.head * e.d_head, (e.head + 1) * e.d_head] }) },
  { key: 'output', title: (e) => `output = heads_z W_Oᵀ${e.biases.output ? ' + b_O' : ''}`,
    about: 'The attention\'s output for token i: what is added to the residual stream.',
    plot: (e) => ({ z: [e.output], rows: [e.query_tokens[e.query]], cols: dims(e.d_model), xTitle: 'd_model' }) },
];

// "q [32] (d_head) = q[0, 3, 1] of q [1, 12, 6, 32] (batch, head, query_pos, d_head)"
function shapeText(key, s) {
  return `${key} ${fmtShape(s.shape)} (${s.axes.join(', ')}) = ${s.of}${s.index} of ${s.of} ${fmtShape(s.of_shape)} `
    + `(${s.of_axes.join(', ')})${s.note ? `; ${s.note}` : ''}`;
}

// The projections themselves, as the steps use them (x W): their shapes from the answer's sizes, and this head's part.
function drawParams(e) {
  const C = e.d_model, D = e.d_head, H = e.heads, G = e.kv_heads, out = e.output.length;
  const kv = G < H ? `key/value head ${e.kv_group}'s columns, shared by ${H / G} heads` : 'this head\'s columns';
  el.mechParams.replaceChildren(
    make('span', { text: 'The projections (x W, no transpose): ' }),
    ...[['W_Q', C, H * D, `this head's columns: [${C}, ${D}]`], ['W_K', C, G * D, `${kv}: [${C}, ${D}]`],
      ['W_V', C, G * D, `${kv}: [${C}, ${D}]`], ['W_O', H * D, out, `this head's rows: [${D}, ${out}]`]]
      .map(([name, rows, cols, part]) => make('code', { text: `${name} [${rows}, ${cols}] (${part})`,
        className: 'mech-param', attrs: { 'data-param': name, 'data-shape': `${rows},${cols}` } })));
}

async function drawArray(div, { z, rows, cols, sequential = false, masked = null, highlightRow = -1, band = null, xTitle, cellText = false }) {
  const Plotly = await loadPlotly();
  const R = z.length, C = z[0].length;
  let lo = 0, hi = 1;
  if (!sequential) {
    let m = 1e-9;
    for (const row of z) for (const v of row) if (v !== null && Math.abs(v) > m) m = Math.abs(v);
    lo = -m; hi = m;
  }
  const er = rows.map((t) => escapeLabel(visible(t))), ec = cols.map((t) => escapeLabel(visible(t)));
  const hover = z.map((row, i) => row.map((v, j) => `${er[i]} · ${ec[j]}: ${v === null ? 'masked, −∞' : v.toFixed(4)}`));
  const trace = { type: 'heatmap', z, x: [...Array(C).keys()], y: [...Array(R).keys()], text: hover,
    hovertemplate: '%{text}<extra></extra>', colorscale: sequential ? SEQUENTIAL : DIVERGING, zmin: lo, zmax: hi,
    xgap: C <= 64 ? 1 : 0, ygap: R <= 64 ? 1 : 0, colorbar: { thickness: 10, nticks: R > 2 ? 6 : 3 } };
  const annotations = [];
  if (cellText && C <= 40) {
    z[0].forEach((v, j) => annotations.push({ x: j, y: 0, text: v === null ? '−∞' : v.toFixed(2), showarrow: false,
      font: { size: 10, color: v === null ? '#000' : textColorOn(trace.colorscale, (v - lo) / (hi - lo)) } }));
  }
  const shapes = [];
  if (highlightRow >= 0) shapes.push({ type: 'rect', xref: 'paper', x0: 0, x1: 1, yref: 'y', y0: highlightRow - 0.5, y1: highlightRow + 0.5, line: { color: '#d62728', width: 2 } });
  if (band) shapes.push({ type: 'rect', xref: 'x', x0: band[0] - 0.5, x1: band[1] - 0.5, yref: 'paper', y0: 0, y1: 1, line: { color: '#d62728', width: 2 } });
  // One row is 16 px up to 40 rows (every token labelled), then the plot stops growing at 680 px.
  const height = Math.min(680, Math.max(110, 70 + R * 16));
  const width = div.clientWidth || 600;
  const x = thinTicks(cols.map(visible), -0.5, C - 0.5, width - 160);
  const y = thinTicks(rows.map(visible), -0.5, R - 0.5, height - 66);
  const layout = {
    height,
    margin: { l: 100, r: 10, t: 6, b: 60 },
    plot_bgcolor: masked && masked.some(Boolean) ? '#c8c8c8' : '#fff',
    xaxis: { ...x, title: { text: xTitle }, tickangle: C > 12 ? -60 : 0, range: [-0.5, C - 0.5], automargin: true },
    yaxis: { ...y, autorange: false, range: [R - 0.5, -0.5], automargin: true },
    annotations, shapes,
  };
  await Plotly.react(div, [trace], layout, { displaylogo: false, responsive: true });
}

function option(value, text) {
  return make('option', { text, attrs: { value } });
}

function fillSelect(select, options, value) {
  select.replaceChildren(...options.map(([v, t]) => option(v, t)));
  select.value = String(value);
}

// Clamp the selection to what the analysis has; a query defaults to the last row of a causal kind
// (it sees every key) and to the second row otherwise (the first after a start token).
function settle(result) {
  const kinds = Object.keys(result.kinds);
  if (!kinds.includes(mech.kind)) mech.kind = kinds[0];
  const kd = result.kinds[mech.kind];
  if (mech.layer === null || mech.layer >= kd.L) mech.layer = 0;
  if (mech.head === null || mech.head >= kd.H) mech.head = 0;
  if (mech.query === null || mech.query >= kd.Tq) mech.query = kd.layout.causal ? kd.Tq - 1 : Math.min(1, kd.Tq - 1);
  return kd;
}

function fillSelectors(result) {
  const kd = settle(result);
  fillSelect(el.mechKind, Object.keys(result.kinds).map((k) => [k, k]), mech.kind);
  fillSelect(el.mechLayer, dims(kd.L).map((l) => [l, `L${l}`]), mech.layer);
  fillSelect(el.mechHead, dims(kd.H).map((h) => [h, `H${h}`]), mech.head);
  fillSelect(el.mechQuery, kd.rows.tokens.map((t, i) => [i, `${i}: ${visible(t)}`]), mech.query);
}

// The URL's kind/layer/head/query name the head this tab explains (not one for the detail dialog).
function readUrl(q) {
  const int = (name) => (q.has(name) && /^\d+$/.test(q.get(name)) ? +q.get(name) : null);
  Object.assign(mech, { kind: q.get('kind'), layer: int('layer'), head: int('head'), query: int('query') });
  return true;
}

function writeUrl(q) {
  if (mech.kind !== null && mech.layer !== null && mech.head !== null) {
    q.set('kind', mech.kind);
    q.set('layer', mech.layer);
    q.set('head', mech.head);
  }
  if (mech.query !== null) q.set('query', mech.query);
}

function headOpened(page, kind, layer, head) {
  Object.assign(mech, { kind, layer, head }); // this tab starts from the last head opened
}

const ready = (page) => !!page.result;

// Wire the selectors once (every change writes the URL and draws), and the detail dialog's button that explains
// the open head here.
function setup(page, tab) {
  const read = () => {
    mech.kind = el.mechKind.value;
    mech.layer = +el.mechLayer.value;
    mech.head = +el.mechHead.value;
    mech.query = +el.mechQuery.value;
  };
  const redraw = () => { page.writeState(); page.redraw(); };
  el.mechKind.addEventListener('change', () => { read(); mech.query = null; redraw(); });
  for (const select of [el.mechLayer, el.mechHead, el.mechQuery]) select.addEventListener('change', () => { read(); redraw(); });
  shell.detailMechanism.hidden = false;
  shell.detailMechanism.addEventListener('click', () => { page.closeDetail(); page.showTab(tab.name); });
}

async function draw({ result, state, generation, writeState }) {
  fillSelectors(result);
  writeState();
  const key = JSON.stringify([result.model, result.text, result.imageSent, result.tokens.length, state.gen, mech]);
  if (key === drawn && el.mechSteps.dataset.state === 'ready') return;
  drawn = key;
  controller?.abort();
  controller = new AbortController();
  const mine = controller; // a newer selection replaces this one: stop drawing then
  el.mechSteps.dataset.state = 'loading';
  el.mechStatus.textContent = 'Computing…';
  el.mechStatus.dataset.kind = 'info';
  let e;
  try {
    e = await fetchExplain({ text: result.text, image: result.imageSent, model: result.model, truncate: state.truncate, generation: generation?.kind,
      newTokens: state.gen, ...mech }, controller.signal);
  } catch (err) {
    if (err.name === 'AbortError') return;
    el.mechSteps.dataset.state = 'error';
    el.mechStatus.textContent = err instanceof ApiError ? err.message : `Error: ${err.message}`;
    el.mechStatus.dataset.kind = 'error';
    drawn = '';
    return;
  }
  const masked = e.masked.filter(Boolean).length;
  el.mechStatus.textContent = `${e.name} · ${e.kind} · query ${e.query} (${visible(e.query_tokens[e.query])}): `
    + `H = ${e.heads} heads, C = ${e.d_model}, D = ${e.heads * e.d_head === e.d_model ? 'C / H = ' : ''}${e.d_head}, `
    + `${Math.abs(e.scale - 1 / Math.sqrt(e.d_head)) < 1e-6 ? '1/√D' : 'scale'} = ${e.scale.toFixed(4)}`
    + `${masked ? `; ${masked} of ${e.key_tokens.length} keys masked` : ''}.`
    + `${(e.notes || []).length ? ` Notes: ${e.notes.join('; ')}.` : ''}`;
  drawParams(e);
  const figures = [];
  for (const step of STEPS) {
    if (step.when && !step.when(e)) continue;
    const figure = make('figure', { className: 'mech-step', attrs: { 'data-step': step.key } });
    const caption = make('figcaption');
    caption.append(make('strong', { text: typeof step.title === 'function' ? step.title(e) : step.title }), make('span', { text: ` ${step.about}` }),
      make('code', { text: shapeText(step.key, e.shapes[step.key]), className: 'mech-shape' }));
    const plot = make('div', { className: 'mech-plot' });
    figure.append(caption, plot);
    figures.push([figure, plot, step]);
  }
  el.mechSteps.replaceChildren(...figures.map(([f]) => f));
  for (const [, plot, step] of figures) {
    if (mine !== controller) return;
    await drawArray(plot, step.plot(e));
  }
  if (mine !== controller) return;
  el.mechSteps.dataset.explained = `${e.kind} ${e.layer} ${e.head} ${e.query}`;
  el.mechSteps.dataset.state = 'ready';
}

register(import.meta.url, { readUrl, writeUrl, headOpened, ready, setup, draw });
