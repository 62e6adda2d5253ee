// Attention laid over the picture an image model saw. An image answer's `image` says how its positions map to the
// picture: `class_token` is the class token's position, `not_patches` every position that is no patch (the class
// token, a distillation token, register tokens), patch (r, c) is position `first_patch` + r * cols + c on a
// `patch_grid` of [rows, cols], and `seen` is a PNG (a data: URL) of the pixels the network read. A row of a head's matrix (one
// query), without the class token's own column, reshaped to the patch grid, is a heat map of what that query reads
// from each patch; it is drawn as a semi-transparent colour over the picture, shaded to the row's own maximum.
// Nothing here knows a model by its name.
//   canvas.overlay[data-kind][data-layer][data-head]   one per head: data-query the position drawn (the class token
//     unless a patch is hovered), data-values the drawn weights (JSON, patch_grid rows x cols, row by row),
//     data-cls the query's weight on the class token (not drawn), data-painted="1" once the picture is under it
//   canvas.rollout-overlay[data-kind]                  the rollout's class-token row over the picture (same data-*)
const PIXELS = 96; // the side of an overlay's canvas (CSS sizes it)
const HEAT = [230, 85, 13]; // the overlay's colour (ColorBrewer Oranges' dark end), alpha by weight
const MAX_ALPHA = 0.8;

// What an answer's `image` says about mapping positions to patches, or why an overlay cannot be drawn for a kind.
export function patchMap(image, kd) {
  const [rows, cols] = image.patch_grid;
  const cls = image.class_token;
  const positions = [];
  for (let p = image.first_patch; p < kd.Tk; p++) if (!image.not_patches.includes(p)) positions.push(p); // row by row
  if (kd.layout.rows !== 'patches' || kd.layout.columns !== 'patches') return { why: 'its rows and columns are not the patches' };
  if (kd.pool[0] > 1 || kd.pool[1] > 1) return { why: `this answer is max-pooled (${kd.pool.join(' × ')} positions a cell): the overlay needs each patch's own weight; open a head for its full matrix` };
  if (positions.length !== rows * cols) return { why: `${positions.length} patch positions do not fill a ${rows} × ${cols} grid` };
  return { rows, cols, cls, positions };
}

// One query's row of `matrix` (Tq x Tk) as {values: Float32Array(rows * cols), cls: its weight on the class token}.
export function patchRow(matrix, Tk, map, query) {
  const row = matrix.subarray(query * Tk, (query + 1) * Tk);
  return { values: Float32Array.from(map.positions, (p) => row[p]), cls: row[map.cls] };
}

// The picture the model saw, loaded once per answer (a data: URL; the page's CSP allows img-src data:).
const pictures = new WeakMap(); // image fields -> Promise<HTMLImageElement>
export function picture(image) {
  if (!pictures.has(image)) {
    pictures.set(image, new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error('the picture the model saw could not be read'));
      img.src = image.seen;
    }));
  }
  return pictures.get(image);
}

// Paint `values` (rows * cols) over `img` on `canvas`, each patch shaded to the values' maximum; `mark` (a patch
// index, optional) is outlined: the hovered patch.
export function paintOverlay(canvas, img, map, { values, cls }, query, mark = -1) {
  canvas.width = canvas.height = PIXELS;
  const ctx = canvas.getContext('2d');
  ctx.imageSmoothingEnabled = false;
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, PIXELS, PIXELS);
  if (img) ctx.drawImage(img, 0, 0, PIXELS, PIXELS);
  let max = 0;
  for (const v of values) if (v > max) max = v;
  const w = PIXELS / map.cols, h = PIXELS / map.rows;
  for (let k = 0; k < values.length; k++) {
    const alpha = max > 0 ? (MAX_ALPHA * values[k]) / max : 0;
    ctx.fillStyle = `rgba(${HEAT.join(', ')}, ${alpha.toFixed(3)})`;
    ctx.fillRect((k % map.cols) * w, Math.floor(k / map.cols) * h, w, h);
  }
  if (mark >= 0) {
    ctx.strokeStyle = '#4292c6';
    ctx.lineWidth = 2;
    ctx.strokeRect((mark % map.cols) * w + 1, Math.floor(mark / map.cols) * h + 1, w - 2, h - 2);
  }
  canvas.dataset.query = String(query);
  canvas.dataset.values = JSON.stringify(Array.from(values, (v) => Number(v.toPrecision(7))));
  canvas.dataset.cls = String(Number(cls.toPrecision(7)));
  canvas.dataset.max = String(Number(max.toPrecision(7)));
  if (img) canvas.dataset.painted = '1';
}

// The patch index under a pointer event on an overlay canvas.
export function patchAt(canvas, map, e) {
  const box = canvas.getBoundingClientRect();
  const c = Math.floor(((e.clientX - box.left) / box.width) * map.cols);
  const r = Math.floor(((e.clientY - box.top) / box.height) * map.rows);
  return r >= 0 && r < map.rows && c >= 0 && c < map.cols ? r * map.cols + c : -1;
}

// The picture itself, large, with the patch grid drawn on it: what the model saw.
export function drawSeen(canvas, img, map) {
  const side = 192;
  canvas.width = canvas.height = side;
  const ctx = canvas.getContext('2d');
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(img, 0, 0, side, side);
  ctx.strokeStyle = 'rgba(66, 146, 198, 0.7)';
  ctx.lineWidth = 1;
  for (let c = 1; c < map.cols; c++) { ctx.beginPath(); ctx.moveTo((c * side) / map.cols, 0); ctx.lineTo((c * side) / map.cols, side); ctx.stroke(); }
  for (let r = 1; r < map.rows; r++) { ctx.beginPath(); ctx.moveTo(0, (r * side) / map.rows); ctx.lineTo(side, (r * side) / map.rows); ctx.stroke(); }
}

// A patch's name in words: "patch r1c2" from the answer's own position names.
export function patchName(tokens, map, k) {
  return tokens?.[map.positions[k]] ?? `patch ${Math.floor(k / map.cols)},${k % map.cols}`;
}

