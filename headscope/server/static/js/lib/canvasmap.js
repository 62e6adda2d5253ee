// One head's matrix drawn on a canvas, with its tokens on both axes and the value under the
// pointer: the notebook's detail view, which cannot carry Plotly.js (3.5 MB). Labels are canvas
// text, never HTML. When the tokens do not fit, every n-th is labelled; the hover shows them all.
import { SEQUENTIAL_LUT } from './colors.js';

const FONT = '11px ui-monospace, SFMono-Regular, Menlo, monospace';
const LABEL_PX = 12; // room one label needs along an axis
const MAX_LABEL = 16; // characters of a token drawn on an axis (longer ones end in …)
const PLOT_PX = 520; // the longer side of the matrix, at most
const MAX_CELL = 24; // the largest cell, for short inputs
const PAD = 6;

const shorten = (t) => (t.length > MAX_LABEL ? `${t.slice(0, MAX_LABEL - 1)}…` : t);

// Which labels an axis of cells `cell` pixels wide shows: every one, or every step-th.
function labelStep(cell) {
  return Math.max(1, Math.ceil(LABEL_PX / cell));
}

// Draw `matrix` (R x C Float32Array, rows are queries) coloured from 0 to `zmax`, with `rows` and
// `cols` as labels. Returns the geometry that `cellAt` needs.
export function drawMatrix(canvas, { matrix, rows, cols, zmax }) {
  const R = rows.length, C = cols.length;
  const cell = Math.max(1, Math.min(MAX_CELL, Math.floor(PLOT_PX / Math.max(R, C))));
  const step = labelStep(cell);
  const ctx = canvas.getContext('2d');
  ctx.font = FONT;
  const widest = (labels, step) => {
    let w = 0;
    for (let i = 0; i < labels.length; i += step) w = Math.max(w, ctx.measureText(shorten(labels[i])).width);
    return Math.ceil(w);
  };
  const left = widest(rows, step) + PAD, top = PAD;
  const bottom = widest(cols, step) + PAD, right = PAD;
  const width = left + C * cell + right, height = top + R * cell + bottom;
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, width, height);

  // the cells: one pixel each, then scaled up without smoothing
  const image = new ImageData(C, R);
  const pixels = new Uint32Array(image.data.buffer);
  const scale = zmax > 0 ? 255 / zmax : 0;
  for (let i = 0; i < R * C; i++) pixels[i] = SEQUENTIAL_LUT[Math.min(255, Math.round(matrix[i] * scale))];
  const cells = document.createElement('canvas');
  cells.width = C;
  cells.height = R;
  cells.getContext('2d').putImageData(image, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(cells, left, top, C * cell, R * cell);

  // the labels: queries to the left, keys below, reading upwards
  ctx.font = FONT;
  ctx.fillStyle = '#1b1f24';
  ctx.textBaseline = 'middle';
  ctx.textAlign = 'right';
  for (let i = 0; i < R; i += step) ctx.fillText(shorten(rows[i]), left - 3, top + (i + 0.5) * cell);
  for (let j = 0; j < C; j += step) {
    ctx.save();
    ctx.translate(left + (j + 0.5) * cell, top + R * cell + 3);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText(shorten(cols[j]), 0, 0);
    ctx.restore();
  }
  return { left, top, cell, R, C };
}

// The cell under a point given in CSS pixels from the canvas's top-left corner, or null.
export function cellAt({ left, top, cell, R, C }, x, y) {
  const i = Math.floor((y - top) / cell), j = Math.floor((x - left) / cell);
  return i >= 0 && i < R && j >= 0 && j < C ? { i, j } : null;
}
