// What the page draws for one attention kind: row and column labels plus a matrix per head,
// after the optional transforms, which are always labelled. Rows and columns are the token
// sequences that the answer's `layout` names for the kind (see api.js `axis`); nothing here
// knows a kind by its name.
//   hide special tokens  drop special positions (the answer's special flags), rescale rows to sum
//                        to 1; a row with under 1% of its weight left is drawn empty, not blown up.
//                        Only where the answer says its rows sum to 1 (`weights.rows_sum_to_one`):
//                        value norms are not probabilities, so their columns are dropped, not rescaled
//   words                merge the tokenizer's pieces of one word (the answer's word ids): attention
//                        *to* a word is the sum of its pieces' columns, *from* a word the mean of its rows

const MIN_KEPT = 0.01; // rows keeping less weight than this after hiding special tokens stay empty
const GENERATED_MARK = '▹'; // prefixed to tokens the model generated itself (a causal LM's continuation)

// The strides of a kind built without them (nested lists read in the order of headscope/models/analysis.py DIMS).
const rowMajor = (kd) => ({ layer: kd.H * kd.Tq * kd.Tk, head: kd.Tq * kd.Tk, query_pos: kd.Tk, key_pos: 1 });

// Weights of one head, Tq rows of Tk keys: exact float32, or 8-bit bytes * scale / 255. The head is found by the
// kind's strides (its axes by name, see api.js decodeKind), so any order of the answer's `dims` reads right.
export function rawMatrix(kd, layer, head) {
  const { Tq, Tk } = kd;
  const s = kd.strides || rowMajor(kd);
  const offset = layer * s.layer + head * s.head;
  if (!kd.scale && s.key_pos === 1 && s.query_pos === Tk) return kd.values.slice(offset, offset + Tq * Tk);
  const ss = kd.scaleStrides || { layer: kd.H, head: 1 };
  const factor = kd.scale ? kd.scale[layer * ss.layer + head * ss.head] / 255 : 1;
  const out = new Float32Array(Tq * Tk);
  for (let i = 0; i < Tq; i++) {
    const row = offset + i * s.query_pos;
    for (let j = 0; j < Tk; j++) out[i * Tk + j] = kd.values[row + j * s.key_pos] * factor;
  }
  const o = kd.overflow; // weights above the head's scale (bytes 255), exact
  if (o) for (let n = 0; n < o.value.length; n++) if (o.layer[n] === layer && o.head[n] === head) out[o.query[n] * Tk + o.key[n]] = o.value[n];
  return out;
}

// The largest value of a view's matrix (R rows of C) over the rows that have a choice: a causal view's first row
// sees one key only, which holds the whole row, so it would set every head's colour scale to 1 (the server's
// compact scale leaves it out the same way, headscope/server/encoding.py CHOICE_ROWS); that row is drawn at full
// colour. -> {max, skipped: whether the first row was left out}
export function colourMax(view, matrix) {
  const skipped = Boolean(view.layout?.causal) && view.R > 1;
  let max = 0;
  for (let i = skipped ? view.C : 0; i < matrix.length; i++) if (matrix[i] > max) max = matrix[i];
  return { max, skipped };
}

export const isPooled = (kd) => kd.pool[0] > 1 || kd.pool[1] > 1;

// A pooled kind (a long text's grid): each cell is the largest weight of a block of tokens, labelled
// by the block's first and last token. The transforms need every token: open a head for them.
function pooledView(kd, result) {
  const blockLabels = (ax, size, count) => Array.from({ length: count }, (_, b) => {
    const first = b * size, last = Math.min(ax.tokens.length, first + size) - 1;
    return `${first}–${last}: ${visible(ax.tokens[first])}…${visible(ax.tokens[last])}`;
  });
  return {
    kind: kd.kind, layout: kd.layout, L: kd.L, H: kd.H, R: kd.Tq, C: kd.Tk, pool: kd.pool,
    rows: blockLabels(kd.rows, kd.pool[0], kd.Tq),
    cols: blockLabels(kd.cols, kd.pool[1], kd.Tk),
    note: `grid thumbnails: each cell is the largest ${result.weights?.label || 'weight'} of ${kd.pool[0]}×${kd.pool[1]} tokens, untransformed; `
      + 'open a head for every token and the word / special-token options',
    matrix: (layer, head) => rawMatrix(kd, layer, head),
  };
}

// Positions of an axis grouped for display: one group per kept token, or per word with `words`.
function groups(ax, nospecial, words) {
  const out = [];
  let lastWord = null;
  for (let i = 0; i < ax.tokens.length; i++) {
    if (nospecial && ax.special[i]) { lastWord = null; continue; }
    const word = words && ax.words ? ax.words[i] : null;
    if (word !== null && word === lastWord && out.length) out[out.length - 1].push(i);
    else out.push([i]);
    lastWord = word;
  }
  return out;
}

// A token that is only whitespace (the dates model reads characters) would be an invisible
// label: draw it as a visible sign instead.
const WHITESPACE = { ' ': '␣', '\t': '⇥', '\n': '↵' };
export const visible = (token) => (/^\s+$/.test(token) ? [...token].map((c) => WHITESPACE[c] || '·').join('') : token);

// The server's offsets count Unicode code points (Python's str), JavaScript strings count UTF-16 units: an emoji is one
// of the first and two of the second. Cut a text by code points: sliceCodePoints(chars, a, b) with chars = [...text].
export const codePoints = (text) => Array.from(text || '');
export const sliceCodePoints = (chars, start, end) => chars.slice(start, end).join('');

// A group's label: the token itself, or for a merged word the text it spans (from the offsets, in code points: `chars`
// is the text's code points), else its pieces joined.
function label(ax, group, chars) {
  const mark = ax.generated && ax.generated[group[0]] ? GENERATED_MARK : '';
  if (group.length === 1) return mark + visible(ax.tokens[group[0]]);
  const first = ax.offsets?.[group[0]], last = ax.offsets?.[group[group.length - 1]];
  if (first && last && chars.length) return mark + sliceCodePoints(chars, first[0], last[1]);
  return mark + group.map((i) => ax.tokens[i]).join('');
}

export function makeView(kd, result, { words = false, nospecial = false } = {}) {
  if (isPooled(kd)) return pooledView(kd, result);
  const { rows: rowAxis, cols: colAxis } = kd;
  const rowGroups = groups(rowAxis, nospecial, words);
  const colGroups = groups(colAxis, nospecial, words);
  const colKeep = colAxis.tokens.map((_, j) => !(nospecial && colAxis.special[j]));
  const hidden = nospecial && (rowAxis.special.some(Boolean) || colAxis.special.some(Boolean));
  const rescale = hidden && (result.weights?.rows_sum_to_one ?? true); // probabilities only: see the top
  const kept = (ax) => ax.tokens.filter((_, i) => !(nospecial && ax.special[i])).length;
  const merged = words && (rowGroups.length < kept(rowAxis) || colGroups.length < kept(colAxis));
  const notes = [];
  if (rescale) notes.push('special tokens hidden, rows rescaled to sum to 1 (rows left with under 1% stay empty)');
  else if (hidden) notes.push(`special tokens hidden (${result.weights.label}: not probabilities, so rows are not rescaled)`);
  if (merged) notes.push('words: columns summed over pieces, rows averaged over pieces');
  else if (words) notes.push('words: every word is a single token here, nothing to merge');
  if ((rowAxis.generated || colAxis.generated || []).some(Boolean)) notes.push(`${GENERATED_MARK} marks tokens the model generated`);
  const R = rowGroups.length, C = colGroups.length;
  const chars = merged ? codePoints(result.text) : [];

  function matrix(layer, head) {
    const raw = rawMatrix(kd, layer, head);
    if (!hidden && !merged) return raw;
    const out = new Float32Array(R * C);
    const Tk = kd.Tk;
    rowGroups.forEach((rows, r) => {
      for (const i of rows) {
        let total = 0;
        if (rescale) for (let j = 0; j < Tk; j++) if (colKeep[j]) total += raw[i * Tk + j];
        const norm = !rescale ? 1 : total >= MIN_KEPT ? 1 / total : 0;
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
    kind: kd.kind, layout: kd.layout, L: kd.L, H: kd.H, R, C, pool: kd.pool,
    rows: rowGroups.map((g) => label(rowAxis, g, chars)),
    cols: colGroups.map((g) => label(colAxis, g, chars)),
    note: notes.join('; '),
    matrix,
  };
}

// Every kind of an answer as a view: {kind: view}.
export function makeViews(result, options = {}) {
  return Object.fromEntries(Object.entries(result.kinds).map(([kind, kd]) => [kind, makeView(kd, result, options)]));
}
