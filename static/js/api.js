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

// One attention kind: {kind, L, H, Tq, Tk, bytes, scale, queries, keys}.
function decodeKind(kind, entry, body, start, header) {
  const [L, H, Tq, Tk] = entry.shape;
  const queries = kind === 'encoder' ? header.tokens : header.output_tokens;
  const keys = kind === 'decoder' ? header.output_tokens : header.tokens;
  const bytes = new Uint8Array(body, start + entry.offset, entry.length);
  return { kind, L, H, Tq, Tk, bytes, scale: entry.scale, queries, keys };
}

export async function fetchAttention({ text, model, truncate, similarity = false }, signal) {
  const response = await post('/api/attention', { text, model, truncate, format: 'compact', similarity }, signal);
  const body = await response.arrayBuffer();
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
