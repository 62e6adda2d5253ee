// Talking to the API. The page asks for binary answers, which are safetensors files: an 8-byte
// header length n, n bytes of JSON header (tensor names -> dtype, shape, byte offsets, and
// __metadata__ holding every other field of the answer as JSON strings), then the tensors' bytes.
// The grid uses format "compact" (8-bit per head, scaled to the head's maximum: weight =
// byte / 255 * scale) pooled to what a thumbnail can show; an opened head can be fetched alone at
// full resolution, and exactly (format "safetensors", float32) for export. The grid's answer leaves
// out the per-head metrics (metrics: false), so it comes sooner; fetchHeads gets them next, computed
// by the server meanwhile from the same forward pass.

import { sizes, strides } from './dims.js';

export const GRID_CELLS = 128; // the grid asks for heads max-pooled to at most this many cells a side

// An error answer: `message` says it in words; `body` is the API's JSON error ({error, detail, ...}).
export class ApiError extends Error {
  constructor(message, body = null) {
    super(message);
    this.body = body;
  }
}

async function post(path, body, signal) {
  let response;
  try {
    response = await fetch(path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      signal,
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(`the server cannot be reached (${e.message})`);
  }
  if (!response.ok) {
    let body = null;
    try { body = await response.json(); } catch { /* not JSON */ }
    throw new ApiError(`${response.status}: ${body?.detail || response.statusText}`, body);
  }
  return response;
}

// The token sequence a layout names ('tokens' or 'output_tokens') with its per-token fields: the
// answer carries special/words/offsets for `tokens` and output_special/output_words for `output_tokens`.
// `patches` (an image model's positions: the class token, then its patches row by row) are named by `tokens`.
export function axis(result, layoutName) {
  const name = layoutName === 'patches' ? 'tokens' : layoutName;
  const prefix = name.slice(0, name.length - 'tokens'.length);
  return {
    name: layoutName,
    tokens: result[name],
    special: result[`${prefix}special`] || result[name].map(() => false),
    words: result[`${prefix}words`] || null,
    offsets: result[`${prefix}offsets`] || null,
    generated: name === 'tokens' ? result.generated : null,
  };
}

// A safetensors body -> {fields, tensors: name -> typed array (Uint8Array or Float32Array)}.
function readSafetensors(buffer) {
  const n = Number(new DataView(buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 8, n)));
  const fields = Object.fromEntries(Object.entries(header.__metadata__).map(([k, v]) => [k, JSON.parse(v)]));
  const tensors = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [a, b] = t.data_offsets.map((o) => 8 + n + o);
    if (t.dtype === 'U8') tensors[name] = new Uint8Array(buffer, a, b - a);
    else if (t.dtype === 'F32') tensors[name] = new Float32Array(buffer.slice(a, b)); // copied: aligned
    else if (t.dtype === 'I32') tensors[name] = new Int32Array(buffer.slice(a, b));
    else throw new ApiError(`unexpected tensor type ${t.dtype}`);
  }
  return { fields, tensors };
}

// One attention kind: {kind, layout, L, H, Tq, Tk, values, scale, strides, scaleStrides, overflow, pool, rows, cols}.
// values: the tensor (uint8 with a per-head `scale`, or exact float32 with scale null), its axes read by name from
// the answer's `dims` (strides: axis name -> step in `values`; the scale's axes are the same without the
// positions); overflow: the weights above their head's scale, exact (headscope/server/encoding.py), as
// {layer, head, query, key, value} arrays, or null; pool: [rows, cols] of tokens per cell; rows and cols: the axes
// (see `axis`) that the layout names.
function decodeKind(kind, entry, tensors, answer) {
  const { layer: L, head: H, query_pos: Tq, key_pos: Tk } = sizes(answer.dims, entry.shape);
  const headDims = answer.dims.filter((d) => d === 'layer' || d === 'head');
  const layout = answer.layout[kind];
  return { kind, layout, L, H, Tq, Tk, values: tensors[entry.tensor], scale: entry.scale ? tensors[entry.scale] : null,
    strides: strides(answer.dims, entry.shape), scaleStrides: strides(headDims, headDims.map((d) => (d === 'layer' ? L : H))),
    overflow: decodeOverflow(entry.overflow, tensors, answer.dims),
    pool: answer.pool[kind], rows: axis(answer, layout.rows), cols: axis(answer, layout.columns) };
}

// An entry's `overflow` ({index: (N, 4) int32 positions along `dims`, value: (N,) float32}) -> {layer, head, query,
// key: Int32Array, value: Float32Array}, each of N; null when the entry has none.
function decodeOverflow(overflow, tensors, dims) {
  if (!overflow) return null;
  const index = tensors[overflow.index], value = tensors[overflow.value];
  const column = (name) => Int32Array.from(value, (_, n) => index[n * dims.length + dims.indexOf(name)]);
  return { layer: column('layer'), head: column('head'), query: column('query_pos'), key: column('key_pos'), value };
}

// `ablate` ([{kind, layer, head}]) and `ablation` (one of the page config's ablation modes): heads to knock out
// (see ablate.js).
// `image` (base64 PNG or JPEG, for a model that takes an image) is sent instead of `text`.
function attentionRequest({ text, image = null, model, truncate, generation = null, newTokens = null, weights = null,
  ablate, ablation, metric = null, span = null, answer = null, wrong = null }) {
  const request = image ? { image, model } : { text, model, truncate };
  if (ablate && ablate.length) Object.assign(request, { ablate, ablation });
  if (ablate && ablate.length && metric) { // what the effect also scores (lib/ablate.js metricFields)
    Object.assign(request, { metric }, span ? { span } : {}, answer !== null ? { answer } : {}, wrong !== null ? { wrong } : {});
  }
  if (generation === 'continuation' && newTokens) request.generate = newTokens;
  if (generation === 'output' && newTokens) request.max_new_tokens = newTokens;
  if (weights) request.weights = weights; // what `attention` holds (none: the server's default); the answer's `weights` says
  return request;
}

// The answer's `rollout` (kind -> {tensor, shape}, axes named by `rollout_about.dims`) -> kind -> {kind, Tq, Tk,
// values: Float32Array, query rows of Tk keys}.
function decodeRollout(entries, tensors, dims) {
  if (!entries) return null;
  return Object.fromEntries(Object.entries(entries).map(([kind, entry]) => {
    const { query_pos: Tq, key_pos: Tk } = sizes(dims, entry.shape);
    const s = strides(dims, entry.shape), data = tensors[entry.tensor];
    const values = s.key_pos === 1 ? data : Float32Array.from({ length: Tq * Tk },
      (_, i) => data[Math.floor(i / Tk) * s.query_pos + (i % Tk) * s.key_pos]);
    return [kind, { kind, Tq, Tk, values }];
  }));
}

// A binary answer (ArrayBuffer of a safetensors file) -> its fields, with `attention` replaced by
// `kinds` (see decodeKind). The notebook output (notebook.js) embeds the same body and reads it here.
export function decodeAnswer(buffer) {
  const { fields, tensors } = readSafetensors(buffer);
  fields.kinds = Object.fromEntries(
    Object.entries(fields.attention).map(([kind, entry]) => [kind, decodeKind(kind, entry, tensors, fields)]));
  delete fields.attention;
  fields.rollout = decodeRollout(fields.rollout, tensors, fields.rollout_about?.dims);
  return fields;
}

async function fetchBinary(request, signal) {
  const response = await post('/api/attention', request, signal);
  const answer = decodeAnswer(await response.arrayBuffer());
  answer.text = request.text; // offsets index into it: word labels are cut from it
  answer.imageSent = request.image; // an image model's input, sent again to fetch one head or the metrics
  return answer;
}

// The grid's answer: every head, pooled to GRID_CELLS, without metrics (`heads` is null: see
// fetchHeads). `params`: text, model, truncate, and for a model that generates, generation (its kind)
// and newTokens (sent as the field that kind names); weights (one of the page config's `weights.kinds`) and
// rollout (true: the answer's `rollout` per kind).
export function fetchAttention(params, signal) {
  return fetchBinary({ ...attentionRequest(params), format: 'compact', similarity: !!params.similarity,
    pool_to: GRID_CELLS, metrics: false, ...(params.rollout ? { rollout: true } : {}) }, signal);
}

// An image answer at full resolution (no pool_to): what the overlays over the picture read when the grid's answer
// is max-pooled (a ViT-B/16's 197 positions pooled to GRID_CELLS lose each patch's own weight), the same request
// otherwise (weights, ablation, rollout).
export function fetchFullAttention(params, signal) {
  return fetchBinary({ ...attentionRequest(params), format: 'compact', metrics: false,
    ...(params.rollout ? { rollout: true } : {}) }, signal);
}

// Every head's metrics and roles for the same request as a grid's answer (POST /api/heads):
// {model, tokens, truncated, heads}.
export async function fetchHeads(params, signal) {
  const { weights, ...request } = attentionRequest(params); // metrics always describe the attention weights
  return (await post('/api/heads', request, signal)).json();
}

// One head at full resolution: 8-bit, or the exact float32 weights with `exact`. Returns its kind
// (see decodeKind) with L = H = 1.
export async function fetchHead(params, { kind, layer, head }, exact = false, signal = undefined) {
  const answer = await fetchBinary({ ...attentionRequest(params), format: exact ? 'safetensors' : 'compact',
    head: { kind, layer, head } }, signal);
  return answer.kinds[kind];
}

// Streams progress lines, calls onProgress(done, total), resolves with the final result.
export async function fetchCorpus({ texts, model }, onProgress, signal) {
  return fetchStream('/api/corpus', { texts, model, stream: true }, onProgress, signal);
}

// POST a request that answers newline-delimited JSON ({done, total} lines, then {result} or {error, detail}):
// calls onProgress(done, total) per line, resolves with the result.
export async function fetchStream(path, body, onProgress, signal) {
  const response = await post(path, body, signal);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let newline;
    while ((newline = buffer.indexOf('\n')) >= 0) {
      const line = JSON.parse(buffer.slice(0, newline));
      buffer = buffer.slice(newline + 1);
      if (line.error) throw new ApiError(line.detail || line.error);
      if (line.result) return line.result;
      onProgress(line.done, line.total);
    }
  }
  throw new ApiError(`the ${path} stream ended without a result`);
}

// One head's steps for one query (POST /api/explain), for the same text and generation as the analysis.
export async function fetchExplain({ text, image = null, model, truncate, generation = null, newTokens = null, kind, layer,
  head, query }, signal) {
  const request = image ? { image, model, kind, layer, head, query } : { text, model, truncate, kind, layer, head, query };
  if (generation === 'continuation' && newTokens) request.generate = newTokens;
  if (generation === 'output' && newTokens) request.max_new_tokens = newTokens;
  return (await post('/api/explain', request, signal)).json();
}

// A causal LM's top-k predictions of the next token (POST /api/predict): [{id, token, text, prob}].
export async function fetchPredictions({ text, model, k }, signal) {
  return (await (await post('/api/predict', { text, model, k }, signal)).json()).predictions;
}

// The nn.MultiheadAttention playground: presets and limits, and one run.
export async function fetchMhaPresets() {
  const response = await fetch('/api/mha/presets');
  if (!response.ok) throw new ApiError(`${response.status}: cannot load the presets`);
  return response.json();
}

export async function runMha(config, signal) {
  return (await post('/api/mha', config, signal)).json();
}

// The probes: their format, limits and example sets, and one run over a JSONL text of pairs.
export async function fetchProbeInfo() {
  const response = await fetch('/api/probe/info');
  if (!response.ok) throw new ApiError(`${response.status}: cannot load the probe's description`);
  return response.json();
}

export async function runProbe(body, signal) {
  return (await post('/api/probe', body, signal)).json();
}

// Heads found the standard way: every head's detector scores on seeded inputs (POST /api/detect).
export async function runDetect(body, signal) {
  return (await post('/api/detect', body, signal)).json();
}
