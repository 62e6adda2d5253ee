// What the page draws for one attention kind: row and column labels plus a matrix per head,
// after the optional transforms, which are always labelled:
//   hide special tokens  drop [CLS]/[SEP]-like positions of the input, rescale rows to sum to 1;
//                        a row with under 1% of its weight left is drawn empty, not blown up
//   words                merge WordPiece pieces (##...) into words: attention *to* a word is the
//                        sum of its pieces' columns, attention *from* a word the mean of its rows

const MIN_KEPT = 0.01; // rows keeping less weight than this after hiding special tokens stay empty

// Weights of one head from the compact bytes: byte / 255 * scale.
export function rawMatrix(kd, layer, head) {
  const n = kd.Tq * kd.Tk;
  const offset = (layer * kd.H + head) * n;
  const factor = kd.scale[layer][head] / 255;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = kd.bytes[offset + i] * factor;
  return out;
}

function groups(tokens, keep, words) {
  const out = [];
  for (let i = 0; i < tokens.length; i++) {
    if (!keep[i]) continue;
    if (words && out.length && tokens[i].startsWith('##')) out[out.length - 1].push(i);
    else out.push([i]);
  }
  return out;
}

// A token that is only whitespace (the dates model reads characters) would be an invisible
// label: draw it as a visible sign instead.
const WHITESPACE = { ' ': '␣', '\t': '⇥', '\n': '↵' };
const visible = (token) => (/^\s+$/.test(token) ? [...token].map((c) => WHITESPACE[c] || '·').join('') : token);

function label(tokens, group) {
  if (group.length === 1) return visible(tokens[group[0]]);
  return group.map((i, n) => (n && tokens[i].startsWith('##') ? tokens[i].slice(2) : tokens[i])).join('');
}

export function makeView(kd, result, { words = false, nospecial = false } = {}) {
  const inputKeep = result.tokens.map((_, i) => !(nospecial && result.special[i]));
  const rowsAreInput = kd.kind === 'encoder';
  const colsAreInput = kd.kind !== 'decoder';
  const rowKeep = rowsAreInput ? inputKeep : kd.queries.map(() => true);
  const colKeep = colsAreInput ? inputKeep : kd.keys.map(() => true);
  const rowGroups = groups(kd.queries, rowKeep, words && rowsAreInput);
  const colGroups = groups(kd.keys, colKeep, words && colsAreInput);
  const hidden = nospecial && result.special.some(Boolean);
  const merged = words && (rowGroups.length < rowKeep.filter(Boolean).length
    || colGroups.length < colKeep.filter(Boolean).length);
  const notes = [];
  if (hidden) notes.push('special tokens hidden, rows rescaled to sum to 1 (rows left with under 1% stay empty)');
  if (merged) notes.push('words: columns summed over pieces, rows averaged over pieces');
  const transformed = hidden || merged;
  const R = rowGroups.length, C = colGroups.length;

  function matrix(layer, head) {
    const raw = rawMatrix(kd, layer, head);
    if (!transformed) return raw;
    const out = new Float32Array(R * C);
    const Tk = kd.Tk;
    rowGroups.forEach((rows, r) => {
      for (const i of rows) {
        let total = 0;
        if (hidden) for (let j = 0; j < Tk; j++) if (colKeep[j]) total += raw[i * Tk + j];
        const norm = !hidden ? 1 : total >= MIN_KEPT ? 1 / total : 0;
        colGroups.forEach((cols, c) => {
          let sum = 0;
          for (const j of cols) sum += raw[i * Tk + j];
          out[r * C + c] += (sum * norm) / rows.length;
        });
      }
    });
    return out;
  }

  return {
    kind: kd.kind, L: kd.L, H: kd.H, R, C,
    rows: rowGroups.map((g) => label(kd.queries, g)),
    cols: colGroups.map((g) => label(kd.keys, g)),
    rowGroups, colGroups, transformed,
    note: notes.join('; '),
    matrix,
  };
}
