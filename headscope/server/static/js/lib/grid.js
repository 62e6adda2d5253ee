// The grid of every layer x head of every attention kind, drawn at once as small canvases.
import { make } from './dom.js';
import { SEQUENTIAL_LUT } from './colors.js';
import { colourMax, makeView } from './views.js';

const MAX_PIXELS = 96; // a thumbnail side; longer inputs are max-pooled so thin lines stay visible

const AXIS_WORDS = { tokens: 'input tokens', output_tokens: 'output positions', patches: 'the class token and the patches' };

// A kind's heading, from its layout: which tokens are the queries (rows) and keys (columns).
export function kindTitle(kind, layout) {
  const axes = layout.rows === layout.columns
    ? `queries and keys: ${AXIS_WORDS[layout.rows] || layout.rows}`
    : `queries: ${AXIS_WORDS[layout.rows] || layout.rows}, keys: ${AXIS_WORDS[layout.columns] || layout.columns}`;
  return `${kind} attention (${axes}${layout.causal ? '; causal: each query sees only earlier keys' : ''})`;
}

// Paint one head's bytes (or a transformed float matrix) into its canvas, scaled to its maximum over the rows that
// have a choice (views.js colourMax; larger values at full colour). `highlightRow` (optional) keeps that query row
// bright and fades the others.
export function paintHead(canvas, view, layer, head, highlightRow = -1) {
  const { R, C } = view;
  const m = view.matrix(layer, head);
  const { max } = colourMax(view, m);
  const scale = max > 0 ? 255 / max : 0;
  const br = Math.ceil(R / MAX_PIXELS), bc = Math.ceil(C / MAX_PIXELS);
  const h = Math.ceil(R / br), w = Math.ceil(C / bc);
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const ctx = canvas.getContext('2d');
  const image = ctx.createImageData(w, h);
  const pixels = new Uint32Array(image.data.buffer);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let v = 0;
      for (let i = y * br; i < Math.min(R, (y + 1) * br); i++) {
        for (let j = x * bc; j < Math.min(C, (x + 1) * bc); j++) if (m[i * C + j] > v) v = m[i * C + j];
      }
      let level = Math.min(255, Math.round(v * scale));
      if (highlightRow >= 0 && Math.floor(highlightRow / br) !== y) level = level >> 2;
      pixels[y * w + x] = SEQUENTIAL_LUT[level];
    }
  }
  ctx.putImageData(image, 0, 0);
}

export function headName(layer, head) {
  return `L${layer}H${head}`;
}

// Draw every kind's grid into `container`; returns {kind: view}. `onOpen(kind, layer, head)` on click. `views`
// (optional): the views to draw, when the caller has made them (else made here with `options`). `layers`
// (optional): [first, last] layers to draw (both included; each kind keeps those it has), else every layer.
export function drawGrids(container, result, options, { onOpen, onHover, roles, views: made = null, layers = null }) {
  container.replaceChildren();
  const views = {};
  for (const [kind, kd] of Object.entries(result.kinds)) {
    const view = made?.[kind] || makeView(kd, result, options);
    views[kind] = view;
    const section = make('section', { className: 'kind-grid', attrs: { 'data-kind': kind } });
    section.append(make('h3', { text: kindTitle(kind, kd.layout) }));
    const grid = make('div', { className: 'grid' });
    grid.style.gridTemplateColumns = `auto repeat(${kd.H}, minmax(24px, 1fr))`;
    grid.style.setProperty('--heads', kd.H);
    grid.append(make('span'));
    for (let h = 0; h < kd.H; h++) grid.append(make('span', { text: `H${h}`, className: 'axis' }));
    const [first, last] = layers ? [Math.max(0, layers[0]), Math.min(kd.L - 1, layers[1])] : [0, kd.L - 1];
    for (let l = first; l <= last; l++) {
      grid.append(make('span', { text: `L${l}`, className: 'axis' }));
      for (let h = 0; h < kd.H; h++) {
        const name = headName(l, h);
        const canvas = make('canvas', {
          className: 'head',
          attrs: {
            'data-kind': kind, 'data-layer': l, 'data-head': h, 'data-name': name,
            title: headTitle(name, roles(kind, l, h)), 'aria-label': name, tabindex: 0, role: 'button',
          },
        });
        canvas.addEventListener('click', () => onOpen(kind, l, h));
        canvas.addEventListener('keydown', (e) => { if (e.key === 'Enter') onOpen(kind, l, h); });
        canvas.addEventListener('mouseenter', () => onHover(kind, l, h, canvas));
        canvas.addEventListener('focus', () => onHover(kind, l, h, canvas));
        grid.append(canvas);
        paintHead(canvas, view, l, h);
      }
    }
    section.append(grid);
    container.append(section);
  }
  return views;
}

function headTitle(name, roles) {
  return roles.length ? `${name}: ${roles.join(', ')}` : name;
}

// Name every head's roles in its tooltip, once they are known (they arrive after the weights).
export function labelRoles(container, roles) {
  for (const canvas of container.querySelectorAll('canvas.head')) {
    const { kind, layer, head } = canvas.dataset;
    canvas.title = headTitle(headName(+layer, +head), roles(kind, +layer, +head));
  }
}

// Repaint every head of one kind with `row` highlighted (the step slider), or none with -1.
export function highlightRow(container, view, row) {
  for (const canvas of container.querySelectorAll(`canvas.head[data-kind="${view.kind}"]`)) {
    paintHead(canvas, view, +canvas.dataset.layer, +canvas.dataset.head, row);
  }
}
