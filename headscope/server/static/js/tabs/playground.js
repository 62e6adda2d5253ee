// The Playground tab: torch.nn.MultiheadAttention configured from a form (POST /api/mha), with the
// presets and limits of GET /api/mha/presets. Shows the code, the shapes torch reports, one weights
// heatmap per head (or the mean), and the largest difference to Headscope's own attention. The form's
// settings live in the URL (?tab=playground&embed_dim=…&bias=1&…, the request's field names), so a
// configuration can be shared and is restored on load.
import { elements, make } from '../lib/dom.js';
import { ApiError, fetchMhaPresets, runMha } from '../lib/api.js';
import { drawHeatmap, loadPlotly } from '../lib/heatmap.js';
import { register } from '../lib/registry.js';

const el = elements(['pg-presets', 'pg-form', 'pg-status', 'pg-code', 'pg-shapes', 'pg-heads']);

const NUMBERS = ['embed_dim', 'num_heads', 'kdim', 'vdim', 'L', 'S', 'N', 'seed'];
const FLAGS = ['bias', 'add_bias_kv', 'add_zero_attn', 'batch_first', 'causal', 'need_weights', 'average_attn_weights'];
const LIMITED = { embed_dim: 'max_embed_dim', kdim: 'max_embed_dim', vdim: 'max_embed_dim', num_heads: 'max_heads',
  L: 'max_length', S: 'max_length', N: 'max_batch', seed: 'max_seed' };

let presets = null; // GET /api/mha/presets
let controller = null;
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

function showShapes(r) {
  const rows = [
    ['query', r.input_shapes.query], ['key', r.input_shapes.key], ['value', r.input_shapes.value],
    ['key_padding_mask', r.input_shapes.key_padding_mask], ['attn_mask', r.input_shapes.attn_mask],
    ['attn_output', r.output_shape],
    ['attn_weights', r.weights_shape && `${JSON.stringify(r.weights_shape)} (${r.weights_axes.join(', ')})`],
    ['max_abs_diff', `${r.max_abs_diff.toExponential(2)} against ${r.compared_with}`],
  ];
  el.pgShapes.replaceChildren(...rows.flatMap(([name, value]) => [
    make('dt', { text: name }),
    make('dd', { text: value === null ? 'None' : typeof value === 'string' ? value : JSON.stringify(value), attrs: { 'data-name': name } }),
  ]));
}

async function drawHeads(r) {
  if (r.weights === null) {
    el.pgHeads.replaceChildren(make('p', { className: 'hint', text: 'need_weights is off: PyTorch returns no weights.' }));
    return;
  }
  const perHead = !r.config.average_attn_weights;
  const maps = perHead ? r.weights : [r.weights];
  const rows = [...Array(r.config.L).keys()].map((i) => `q${i}`);
  const cols = r.key_labels;
  await loadPlotly();
  const boxes = maps.map((_, h) => make('div', { className: 'pg-head', attrs: { 'data-head': perHead ? h : 'mean' } }));
  el.pgHeads.replaceChildren(...boxes);
  await Promise.all(maps.map((m, h) => drawHeatmap(boxes[h], {
    matrix: Float32Array.from(m.flat()), rows, cols, zmax: 1,
    title: perHead ? `head ${h} (batch 0)` : `mean of ${r.config.num_heads} heads (batch 0)`,
  })));
}

async function run() {
  let config;
  try {
    config = readForm();
  } catch (e) {
    status(e.message, 'error');
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
    if (e.name === 'AbortError') return;
    el.pgShapes.dataset.state = 'error';
    status(e instanceof ApiError ? e.message : `Error: ${e.message}`, 'error');
    return;
  }
  el.pgCode.textContent = r.code;
  showShapes(r);
  await drawHeads(r);
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
