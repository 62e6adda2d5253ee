// Talking to the JSON API. The page asks for the compact encoding: per head, 8-bit bytes
// scaled to the head's maximum (weight = byte / 255 * scale), never JSON floats.

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

function base64ToBytes(text) {
  if (Uint8Array.fromBase64) return Uint8Array.fromBase64(text);
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

// One attention kind: {L, H, Tq, Tk, bytes, scale, queries, keys}.
function decodeKind(kind, compact, result) {
  const [L, H, Tq, Tk] = compact.shape;
  const queries = kind === 'encoder' ? result.tokens : result.output_tokens;
  const keys = kind === 'decoder' ? result.output_tokens : result.tokens;
  return { kind, L, H, Tq, Tk, bytes: base64ToBytes(compact.data), scale: compact.scale, queries, keys };
}

export async function fetchAttention({ text, model, truncate, similarity = false }, signal) {
  const response = await post('/api/attention', { text, model, truncate, format: 'compact', similarity }, signal);
  const result = await response.json();
  result.kinds = Object.fromEntries(
    Object.entries(result.attention).map(([kind, c]) => [kind, decodeKind(kind, c, result)]));
  delete result.attention;
  return result;
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
