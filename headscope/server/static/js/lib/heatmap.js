// Plotly.js is served by our own server from the installed `plotly` Python package (no CDN),
// and loaded only when a chart is first needed: the grid does not need it.
import { SEQUENTIAL } from './colors.js';

let loading = null;

export function loadPlotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const script = document.createElement('script');
      script.src = '/vendor/plotly.min.js';
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => { loading = null; reject(new Error('plotly.min.js failed to load')); };
      document.head.append(script);
    });
  }
  return loading;
}

// Plotly reads labels as pseudo-HTML (<b>, <br>, &amp;...). Escaping &, < and > makes any
// token or user text show literally.
export function escapeLabel(text) {
  return String(text).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

const LABEL_PX = 13; // room one tick label needs along an axis

// Tick positions and labels for the part [lo, hi] of an axis of `labels` that is in view: every
// label when they fit in `pixels`, else every n-th. Zooming in brings the others back.
export function thinTicks(labels, lo, hi, pixels) {
  const first = Math.max(0, Math.ceil(lo)), last = Math.min(labels.length - 1, Math.floor(hi));
  const fit = Math.max(1, Math.floor(pixels / LABEL_PX));
  const step = Math.max(1, Math.ceil((last - first + 1) / fit));
  const tickvals = [];
  for (let i = Math.ceil(first / step) * step; i <= last; i += step) tickvals.push(i);
  return { tickmode: 'array', tickvals, ticktext: tickvals.map((i) => escapeLabel(labels[i])) };
}

// A heatmap of `matrix` (rows x cols, Float32Array) with tokens on both axes. Axes are numeric
// positions with tick labels, so repeated or number-like tokens never merge into one category.
export async function drawHeatmap(div, { matrix, rows, cols, title, zmax, colorscale = SEQUENTIAL,
  zmin = 0, colorbarTitle = 'weight', highlightRow = -1, xTitle = 'key', yTitle = 'query', joiner = ' → ' }) {
  const Plotly = await loadPlotly();
  const R = rows.length, C = cols.length;
  const z = [], text = [];
  const er = rows.map(escapeLabel), ec = cols.map(escapeLabel);
  for (let i = 0; i < R; i++) {
    z.push(Array.from(matrix.subarray(i * C, (i + 1) * C)));
    text.push(ec.map((c) => `${er[i]}${joiner}${c}`));
  }
  const trace = {
    type: 'heatmap', z, text, x: [...Array(C).keys()], y: [...Array(R).keys()],
    colorscale, zmin, zmax, xgap: 0, ygap: 0,
    hovertemplate: `%{text}: %{z:.3f}<extra></extra>`,
    colorbar: { title: { text: escapeLabel(colorbarTitle), side: 'right' } },
  };
  const shapes = highlightRow >= 0 ? [{
    type: 'rect', xref: 'paper', x0: 0, x1: 1, yref: 'y', y0: highlightRow - 0.5, y1: highlightRow + 0.5,
    line: { color: '#d62728', width: 2 },
  }] : [];
  const layout = {
    title: { text: escapeLabel(title) },
    margin: { l: 110, r: 20, t: 40, b: 110 },
    // No tick marks: beside a token such as "-" a tick mark read as part of it ("- -").
    xaxis: { title: { text: xTitle }, side: 'bottom', tickangle: -60, automargin: true, range: [-0.5, C - 0.5], ticks: '' },
    yaxis: { title: { text: yTitle }, autorange: false, range: [R - 0.5, -0.5], automargin: true, ticks: '' },
    shapes,
    hoverlabel: { namelength: -1 },
    modebar: { orientation: 'v' },
  };
  // The toolbar stands vertically at the right edge, clear of the title; Plotly's "double-click to zoom
  // back out" tip is off (it was clipped in small panels; the toolbar's home button does the same).
  await Plotly.react(div, [trace], layout, { displaylogo: false, responsive: true, showTips: false });
  await relabel(div, rows, cols);
  if (!div.dataset.relabel) {
    div.dataset.relabel = '1';
    div.on('plotly_relayout', (event) => {
      if (Object.keys(event).some((k) => k.includes('range') || k.includes('autosize'))) relabel(div, div._rows, div._cols);
    });
  }
  return div;
}

// Re-thin the tick labels for what is in view now.
function relabel(div, rows, cols) {
  div._rows = rows; div._cols = cols;
  const { xaxis, yaxis } = div._fullLayout;
  const x = thinTicks(cols, Math.min(...xaxis.range), Math.max(...xaxis.range), xaxis._length);
  const y = thinTicks(rows, Math.min(...yaxis.range), Math.max(...yaxis.range), yaxis._length);
  return window.Plotly.relayout(div, {
    'xaxis.tickmode': 'array', 'xaxis.tickvals': x.tickvals, 'xaxis.ticktext': x.ticktext,
    'yaxis.tickmode': 'array', 'yaxis.tickvals': y.tickvals, 'yaxis.ticktext': y.ticktext,
  });
}
