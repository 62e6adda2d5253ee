// One sequential, colour-blind-safe scale (ColorBrewer Blues) for thumbnails and heatmaps,
// and one diverging scale (ColorBrewer PuOr) for differences.
const BLUES = ['#f7fbff', '#deebf7', '#c6dbef', '#9ecae1', '#6baed6', '#4292c6', '#2171b5', '#08519c', '#08306b'];
const PUOR = ['#2d004b', '#542788', '#8073ac', '#b2abd2', '#d8daeb', '#f7f7f7', '#fee0b6', '#fdb863', '#e08214', '#b35806', '#7f3b08'];

const toScale = (colors) => colors.map((c, i) => [i / (colors.length - 1), c]);
export const SEQUENTIAL = toScale(BLUES);
export const DIVERGING = toScale(PUOR);

function rgb(hex) {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

// 256 RGBA colours packed as little-endian uint32, for writing ImageData fast.
function lut(colors) {
  const out = new Uint32Array(256);
  const stops = colors.map(rgb);
  for (let v = 0; v < 256; v++) {
    const x = (v / 255) * (stops.length - 1);
    const i = Math.min(Math.floor(x), stops.length - 2);
    const f = x - i;
    const [r, g, b] = [0, 1, 2].map((c) => Math.round(stops[i][c] * (1 - f) + stops[i + 1][c] * f));
    out[v] = (255 << 24) | (b << 16) | (g << 8) | r;
  }
  return out;
}

export const SEQUENTIAL_LUT = lut(BLUES);

// CSS colour for a value in [0, 1] on the sequential scale.
export function sequentialColor(value) {
  const c = SEQUENTIAL_LUT[Math.max(0, Math.min(255, Math.round(value * 255)))];
  return `rgb(${c & 255}, ${(c >> 8) & 255}, ${(c >> 16) & 255})`;
}

// Black or white text, whichever has more contrast on the colour `scale` (as SEQUENTIAL: [[t, hex], ...] evenly
// spaced) gives t in [0, 1]: by WCAG relative luminance, whose crossover is 0.179.
export function textColorOn(scale, t) {
  const x = Math.max(0, Math.min(1, t)) * (scale.length - 1);
  const i = Math.min(Math.floor(x), scale.length - 2), f = x - i;
  const [a, b] = [scale[i][1], scale[i + 1][1]].map(rgb);
  const linear = (c) => { const v = c / 255; return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const luminance = [0.2126, 0.7152, 0.0722].reduce((sum, w, c) => sum + w * linear(a[c] * (1 - f) + b[c] * f), 0);
  return luminance > 0.179 ? '#000' : '#fff';
}
