// The Playground tab: torch.nn.MultiheadAttention configured from a form (POST /api/mha), with the
// presets and limits of GET /api/mha/presets. Shows the code, the shapes torch reports, the shapes of
// the parameters and of every step (from the answer's `parameters`, `sizes` and `steps`), one weights
// heatmap per head (or the mean) for the batch element chosen with "batch b" (its padded keys marked, from
// `key_padding`), and in plain words how closely our own attention matches PyTorch's. An error clears every
// earlier result, so only the message shows. The form's
// settings live in the URL (?tab=playground&embed_dim=…&bias=1&…, the request's field names), so a
// configuration can be shared and is restored on load.
import { elements, make } from '../lib/dom.js';
import { ApiError, fetchMhaPresets, runMha } from '../lib/api.js';
import { drawHeatmap, loadPlotly } from '../lib/heatmap.js';
import { register } from '../lib/registry.js';

const el = elements(['pg-presets', 'pg-form', 'pg-status', 'pg-agreement', 'pg-code', 'pg-shapes', 'pg-params',
  'pg-steps', 'pg-batch', 'pg-heads']);

const NUMBERS = ['embed_dim', 'num_heads', 'kdim', 'vdim', 'L', 'S', 'N', 'seed'];
const FLAGS = ['bias', 'add_bias_kv', 'add_zero_attn', 'batch_first', 'causal', 'need_weights', 'average_attn_weights'];
const LIMITED = { embed_dim: 'max_embed_dim', kdim: 'max_embed_dim', vdim: 'max_embed_dim', num_heads: 'max_heads',
  L: 'max_length', S: 'max_length', N: 'max_batch', seed: 'max_seed' };

let presets = null; // GET /api/mha/presets
let controller = null;
let last = null; // the answer on show, or null
let batch = 0; // the batch element drawn; kept across runs while the batch has it
let fromUrl = {}; // settings read from the URL on load: field name -> value, applied over the first preset
let onChange = () => {}; // the page's writeState
const field = (name) => el.pgForm.elements[name];

// key_padding_mask as typed: empty (none), lengths "10, 7", or JSON such as [[false, true], [false, false]].
function parseMask(text) {
  const t = text.trim();
  if (!t) return null;
  if (t.startsWith('[')) return JSON.parse(t);
  return t.split(/[\s,]+/).filter(Boolean).map((n) => {
    if (!/^\d+$/.test(n)) throw new Error(`key_padding_mask: "${n}" is not a length`);
    return +n;
  });
}

function readForm() {
  const config = {};
  for (const name of NUMBERS) {
    const v = field(name).value.trim();
    config[name] = v === '' ? null : Number(v);
  }
  for (const name of FLAGS) config[name] = field(name).checked;
  config.key_padding_mask = parseMask(field('key_padding_mask').value);
  return config;
}

function fillForm(config) {
  for (const name of NUMBERS) field(name).value = config[name] ?? '';
  for (const name of FLAGS) field(name).checked = config[name];
  const m = config.key_padding_mask;
  field('key_padding_mask').value = m === null ? '' : m.every((n) => typeof n === 'number') ? m.join(', ') : JSON.stringify(m);
}

// ---- the settings in the URL: numbers as typed (empty: none), flags 1/0, the mask as typed ------------

function readUrl(q) {
  fromUrl = {};
  for (const name of NUMBERS) {
    if (q.has(name) && /^\d*$/.test(q.get(name))) fromUrl[name] = q.get(name) === '' ? null : +q.get(name);
  }
  for (const name of FLAGS) {
    if (['0', '1'].includes(q.get(name))) fromUrl[name] = q.get(name) === '1';
  }
  if (q.has('key_padding_mask')) fromUrl.key_padding_mask = q.get('key_padding_mask');
}

function writeUrl(q) {
  if (!presets) { // the form is not filled yet: keep what the URL asked for
    for (const [name, value] of Object.entries(fromUrl)) {
      q.set(name, typeof value === 'boolean' ? (value ? '1' : '0') : value ?? '');
    }
    return;
  }
  for (const name of NUMBERS) q.set(name, field(name).value.trim());
  for (const name of FLAGS) q.set(name, field(name).checked ? '1' : '0');
  q.set('key_padding_mask', field('key_padding_mask').value.trim());
}

function status(text, kind = 'info') {
  el.pgStatus.textContent = text;
  el.pgStatus.dataset.kind = kind;
}

// Every earlier result goes, so that an error's message stands alone.
function clearResult() {
  last = null;
  el.pgCode.textContent = '';
  for (const box of [el.pgAgreement, el.pgShapes, el.pgParams, el.pgSteps, el.pgBatch, el.pgHeads]) box.replaceChildren();
}

function fail(message) {
  controller?.abort();
  controller = null;
  clearResult();
  el.pgShapes.dataset.state = 'error';
  status(message, 'error');
}

const shapeText = (shape) => `[${shape.join(', ')}]`;

function showShapes(r) {
  const rows = [
    ['query', r.input_shapes.query], ['key', r.input_shapes.key], ['value', r.input_shapes.value],
    ['key_padding_mask', r.input_shapes.key_padding_mask], ['attn_mask', r.input_shapes.attn_mask],
    ['attn_output', r.output_shape],
    ['attn_weights', r.weights_shape && `${JSON.stringify(r.weights_shape)} (${r.dims.weights.join(', ')})`],
  ];
  el.pgShapes.replaceChildren(...rows.flatMap(([name, value]) => [
    make('dt', { text: name }),
    make('dd', { text: value === null ? 'None' : typeof value === 'string' ? value : JSON.stringify(value), attrs: { 'data-name': name } }),
  ]));
}

function table(box, caption, head, rows) {
  const tr = (cells, tag) => {
    const row = make('tr');
    row.append(...cells.map(([text, mono]) => make(tag, { text, className: mono ? 'mono' : undefined })));
    return row;
  };
  box.replaceChildren(make('caption', { text: caption }), tr(head.map((h) => [h]), 'th'), ...rows.map((r) => {
    const row = tr(r.cells, 'td');
    row.dataset.name = r.name;
    return row;
  }));
}

// The parameters torch holds and the shape of every step, with their shapes in symbols (E, H, D = E / H, …).
function showParameters(r) {
  const z = r.sizes;
  table(el.pgParams, `Parameters of nn.MultiheadAttention: E = ${z.E}, H = ${z.H} heads, head_dim D = E / H = ${z.E} / ${z.H} = ${z.D}`,
    ['parameter', 'shape', 'in symbols', 'what it is'],
    r.parameters.map((p) => ({ name: p.name, cells: [[p.name, true], [shapeText(p.shape), true], [shapeText(p.symbols), true], [p.about]] })));
  table(el.pgSteps, `Inside the computation (batch first): N = ${z.N}, L = ${z.L}, S' = ${z["S'"]} keys, D = ${z.D}`,
    ['step', 'shape', 'in symbols', 'axes'],
    r.steps.map((s) => ({ name: s.name, cells: [[s.title], [shapeText(s.shape), true], [shapeText(s.symbols), true], [s.dims.join(', ')]] })));
}

// How closely our own attention matches PyTorch's, in words; the technical names in a details element.
function showAgreement(r) {
  const d = r.max_abs_diff;
  const number = d === 0 ? '0 (exactly equal)' : d.toExponential(1);
  const line = make('p', {
    text: `${r.compared_with_words} equals torch.nn.MultiheadAttention's output${r.weights ? ' and weights' : ''} to within `
      + `${number} (the largest difference of any number, over the whole batch).`,
    attrs: { id: 'pg-agreement-line', 'data-value': String(d) },
  });
  const details = make('details');
  details.append(make('summary', { text: 'technical names' }),
    make('code', { text: `max_abs_diff = ${d} against ${r.compared_with}` }));
  el.pgAgreement.replaceChildren(line, details);
}

const padded = (r, b) => r.key_labels.filter((_, j) => r.key_padding[b][j]);

// One button per batch element ("batch b", with its count of padded keys), and a line naming its padded keys.
function showBatch(r) {
  const N = r.labels.batch.length;
  if (batch >= N) batch = 0;
  const buttons = r.labels.batch.map((label, b) => {
    const n = padded(r, b).length;
    const button = make('button', {
      text: `batch ${label}${n ? ` · ${n} padded` : ''}`,
      attrs: { type: 'button', 'data-batch': b, 'aria-pressed': String(b === batch) },
    });
    button.addEventListener('click', () => {
      if (!last || b === batch) return;
      batch = b;
      showBatch(last);
      drawHeads(last, controller);
    });
    return button;
  });
  const keys = padded(r, batch);
  const note = make('span', {
    className: 'hint',
    text: keys.length ? `batch ${r.labels.batch[batch]}: key${keys.length > 1 ? 's' : ''} ${keys.join(', ')} ${keys.length > 1 ? 'are' : 'is'} `
      + 'padding (key_padding_mask): every query gives them weight 0.' : `batch ${r.labels.batch[batch]}: no padded keys.`,
    attrs: { id: 'pg-batch-note' },
  });
  el.pgBatch.replaceChildren(make('span', { text: 'Batch element:' }), ...buttons, note);
}

async function drawHeads(r, mine) {
  if (r.weights === null) {
    el.pgHeads.replaceChildren(make('p', { className: 'hint', text: 'need_weights is off: PyTorch returns no weights.' }));
    return;
  }
  const dims = r.dims.weights; // ["batch", "head"?, "query_pos", "key_pos"]
  const b = batch;
  const element = r.weights[b]; // [L, S'] or [H, L, S']
  const perHead = dims.includes('head');
  const maps = perHead ? element : [element];
  const rows = r.labels.query_pos;
  const cols = r.labels.key_pos.map((label, j) => (r.key_padding[b][j] ? `${label} pad` : label));
  await loadPlotly();
  if (mine !== controller || last !== r) return; // a newer run (or an error) came meanwhile
  const boxes = maps.map((_, h) => make('div', { className: 'pg-head', attrs: { 'data-head': perHead ? h : 'mean', 'data-batch': b } }));
  el.pgHeads.replaceChildren(...boxes);
  await Promise.all(maps.map((m, h) => drawHeatmap(boxes[h], {
    matrix: Float32Array.from(m.flat()), rows, cols, zmax: 1,
    title: perHead ? `head ${r.labels.head[h]} · batch ${r.labels.batch[b]}`
      : `mean of ${r.labels.head.length} heads · batch ${r.labels.batch[b]}`,
  })));
}

async function run() {
  let config;
  try {
    config = readForm();
  } catch (e) {
    fail(e.message);
    return;
  }
  onChange();
  controller?.abort();
  controller = new AbortController();
  const mine = controller;
  el.pgShapes.dataset.state = 'loading';
  status('Running…');
  let r;
  try {
    r = await runMha(config, controller.signal);
  } catch (e) {
    if (e.name === 'AbortError' || mine !== controller) return;
    fail(e instanceof ApiError ? e.message : `Error: ${e.message}`);
    return;
  }
  if (mine !== controller) return;
  last = r;
  el.pgCode.textContent = r.code;
  showShapes(r);
  showParameters(r);
  showAgreement(r);
  showBatch(r);
  await drawHeads(r, mine);
  if (mine !== controller) return;
  el.pgShapes.dataset.state = 'ready';
  status(`attn_output ${JSON.stringify(r.output_shape)}; attn_weights ${JSON.stringify(r.weights_shape)}.`);
}

// Load the presets and limits once, make a button per preset, start from the first.
async function draw({ setStatus }) {
  if (presets) return;
  try {
    presets = await fetchMhaPresets();
  } catch (e) {
    setStatus(e.message, 'error');
    return;
  }
  for (const [name, limit] of Object.entries(LIMITED)) field(name).max = presets.limits[limit];
  for (const preset of presets.presets) {
    const button = make('button', { text: preset.name, attrs: { type: 'button', title: preset.title, 'data-preset': preset.name } });
    button.addEventListener('click', () => { fillForm(preset.config); run(); });
    el.pgPresets.append(button);
  }
  const { key_padding_mask: mask, ...restored } = fromUrl;
  fillForm({ ...presets.presets[0].config, ...restored });
  if (mask !== undefined) field('key_padding_mask').value = mask;
  await run();
}

// Each run's settings in the form are written into the URL.
function setup(page) {
  onChange = page.writeState;
  el.pgForm.addEventListener('submit', (e) => { e.preventDefault(); run(); });
  el.pgForm.addEventListener('change', run);
}

register(import.meta.url, { readUrl, writeUrl, draw, setup });
