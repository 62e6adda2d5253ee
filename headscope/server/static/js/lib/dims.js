// Arrays that name their axes: an answer gives `dims` (e.g. ["layer", "head", "query_pos", "key_pos"]) beside a
// shape or nested lists. These read them by name, so nothing here assumes an order of axes.

// {axis name: size} of an array whose axes are `dims`.
export function sizes(dims, shape) {
  if (dims.length !== shape.length) throw new Error(`dims ${dims.join(', ')} do not match a shape of ${shape.length} axes`);
  return Object.fromEntries(dims.map((d, i) => [d, shape[i]]));
}

// {axis name: stride} of a row-major (C-order) array of `shape` whose axes are `dims`.
export function strides(dims, shape) {
  const out = {};
  let step = 1;
  for (let i = dims.length - 1; i >= 0; i--) {
    out[dims[i]] = step;
    step *= shape[i];
  }
  return out;
}

// Nested 2-D lists whose axes are `dims`, as rows of `rows` (the other axis becomes the columns): the same
// lists when they already are, else transposed.
export function byRows(nested, dims, rows) {
  if (dims.length !== 2 || !dims.includes(rows)) throw new Error(`cannot read [${dims.join('][')}] by ${rows}`);
  if (dims[0] === rows) return nested;
  const C = nested.length, R = C ? nested[0].length : 0;
  return Array.from({ length: R }, (_, r) => Array.from({ length: C }, (_, c) => nested[c][r]));
}
