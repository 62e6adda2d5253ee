// Talking to the API. The page asks for the compact encoding: one binary body,
// [header length n, uint32 little-endian][header: n bytes of JSON][attention bytes], 8-bit per head
// scaled to the head's maximum (weight = byte / 255 * scale): never JSON floats.

export class ApiError extends Error {}

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
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch { /* not JSON */ }
    throw new ApiError(`${response.status}: ${detail}`);
  }
  return response;
}

// The token sequence a layout names ('tokens' or 'output_tokens') with its per-token fields: the
// answer carries special/words/offsets for `tokens` and output_special/output_words for `output_tokens`.
export function axis(result, name) {
  const prefix = name.slice(0, name.length - 'tokens'.length);
  return {
    name,
    tokens: result[name],
    special: result[`${prefix}special`] || result[name].map(() => false),
    words: result[`${prefix}words`] || null,
    offsets: result[`${prefix}offsets`] || null,
    generated: name === 'tokens' ? result.generated : null,
  };
}

// One attention kind: {kind, layout, L, H, Tq, Tk, bytes, scale, rows, cols}, where rows and cols
// are the axes (see `axis`) that the answer's layout names for this kind.
function decodeKind(kind, entry, body, start, header) {
  const [L, H, Tq, Tk] = entry.shape;
  const layout = header.layout[kind];
  const bytes = new Uint8Array(body, start + entry.offset, entry.length);
  return { kind, layout, L, H, Tq, Tk, bytes, scale: entry.scale, rows: axis(header, layout.rows), cols: axis(header, layout.columns) };
}

// `newTokens`: for a model that generates, how many tokens (sent as the field its `generation` names).
export async function fetchAttention({ text, model, truncate, similarity = false, generation = null, newTokens = null }, signal) {
  const request = { text, model, truncate, format: 'compact', similarity };
  if (generation === 'continuation' && newTokens) request.generate = newTokens;
  if (generation === 'output' && newTokens) request.max_new_tokens = newTokens;
  const response = await post('/api/attention', request, signal);
  const result = decodeCompact(await response.arrayBuffer());
  result.text = text; // offsets index into it: word labels are cut from it
  return result;
}

// A compact body (ArrayBuffer) -> its header, with `attention` replaced by `kinds` (see decodeKind).
// The notebook output (notebook.js) embeds the same body, so both read it here.
export function decodeCompact(body) {
  const length = new DataView(body).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(body, 4, length)));
  header.kinds = Object.fromEntries(
    Object.entries(header.attention).map(([kind, entry]) => [kind, decodeKind(kind, entry, body, 4 + length, header)]));
  delete header.attention;
  return header;
}

// Streams progress lines, calls onProgress(done, total), resolves with the final result.
export async function fetchCorpus({ texts, model }, onProgress, signal) {
  const response = await post('/api/corpus', { texts, model, stream: true }, signal);
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
  throw new ApiError('the corpus stream ended without a result');
}
