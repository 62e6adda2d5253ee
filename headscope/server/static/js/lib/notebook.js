// Headscope inside a notebook output: the page's grid (grid.js, views.js), a canvas detail view
// (canvasmap.js) and the head table, with no server, no fetch and nothing from a CDN.
// headscope/notebook/show.py writes, per output, a div.hs-nb#hs-… holding a script.hs-data element of type
// application/json, {"body": …}: the API's compact answer (a safetensors file, api.js decodeAnswer), deflated and
// base64-encoded. It is followed by one classic script: this module joined with the modules it imports (headscope/notebook/bundle.py),
// calling mount(root). Everything is looked up inside `root`, so outputs never clash.
// Hooks for tests: root[data-state] = ready | error, canvas.head[data-kind][data-layer][data-head]
// as on the page, canvas.hs-heatmap[data-kind][data-layer][data-head] for the open head (with
// data-left, data-top, data-cell: where its cells are), div.hs-tip for the value under the pointer,
// tr[data-kind][data-layer][data-head] in the head table.
import { make } from './dom.js';
import { decodeAnswer } from './api.js';
import { drawGrids, headName } from './grid.js';
import { cellAt, drawMatrix } from './canvasmap.js';
import { colourMax } from './views.js';

// base64 of a zlib (deflate) stream -> ArrayBuffer, with the browser's own DecompressionStream.
async function inflate(base64) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate'));
  return new Response(stream).arrayBuffer();
}

export async function mount(root) {
  const message = root.querySelector('.hs-message');
  try {
    const data = JSON.parse(root.querySelector('script.hs-data').textContent);
    const result = decodeAnswer(await inflate(data.body));
    message.remove();
    build(root, result);
    root.dataset.state = 'ready';
  } catch (e) {
    root.dataset.state = 'error';
    message.textContent = `Headscope could not draw this output: ${e.message}`;
  }
}

function checkbox(text, title) {
  const label = make('label', { attrs: { title } });
  const input = make('input', { attrs: { type: 'checkbox' } });
  label.append(input, document.createTextNode(` ${text}`));
  return { label, input };
}

const fmt = (v) => (v === null || v === undefined ? 'n/a' : v.toFixed(3));

function build(root, result) {
  const state = { kind: null, layer: null, head: null, words: false, nospecial: false };
  const sort = { key: 'name', descending: false };
  let views = {};
  let geometry = null;
  const kinds = Object.keys(result.kinds);
  const first = result.kinds[kinds[0]];

  const roles = (kind, layer, head) => result.heads[kind]?.[layer * result.kinds[kind].H + head]?.roles || [];

  // ---- the parts, top to bottom
  const summary = make('p', { className: 'hs-summary', text: `Headscope · ${result.model} · ${result.tokens.length} tokens`
    + `${result.output_tokens ? ` → ${result.output_tokens.length} output positions` : ''}`
    + ` · ${first.L} layers × ${first.H} heads${result.truncated ? ' · text cut to fit' : ''}` });
  const words = checkbox('words', 'Merge subword pieces into words: attention to a word sums its pieces\' columns; from a word averages its pieces\' rows');
  const nospecial = checkbox('hide special tokens', 'Drop special tokens such as [CLS] and [SEP], then rescale each row to sum to 1');
  const transform = make('span', { className: 'hs-transform' });
  const options = make('div', { className: 'hs-options' });
  options.append(words.label, nospecial.label, transform);
  const hint = make('p', { className: 'hs-note', text: 'Each square is one head: rows are queries, columns are keys, '
    + 'shaded to the head\'s own maximum. Hover to name it, click to open it.' });
  const hover = make('p', { className: 'hs-hover' });
  const grids = make('div', { className: 'hs-grids' });

  const detail = make('section', { className: 'hs-detail' });
  detail.hidden = true;
  const title = make('h4');
  const badges = make('span');
  const bar = make('div', { className: 'hs-bar' });
  const button = (text, label, onClick) => {
    const b = make('button', { text, attrs: { type: 'button', title: label, 'aria-label': label } });
    b.addEventListener('click', onClick);
    return b;
  };
  bar.append(button('↑', 'previous layer', () => step(-1, 0)), button('←', 'previous head', () => step(0, -1)), title,
    button('→', 'next head', () => step(0, 1)), button('↓', 'next layer', () => step(1, 0)), badges,
    button('close', 'close', closeDetail));
  const note = make('p', { className: 'hs-note' });
  const plot = make('div', { className: 'hs-plot' });
  const heatmap = make('canvas', { className: 'hs-heatmap', attrs: { tabindex: 0 } });
  const tip = make('div', { className: 'hs-tip' });
  tip.hidden = true;
  plot.append(heatmap, tip);
  detail.append(bar, note, plot);

  const main = make('div', { className: 'hs-main' });
  main.append(grids, detail);

  const tableBox = make('details');
  const tableKind = make('select', { attrs: { 'aria-label': 'attention kind' } });
  tableKind.append(...kinds.map((k) => make('option', { text: k, attrs: { value: k } })));
  tableKind.hidden = kinds.length < 2;
  const table = make('table', { className: 'hs-table' });
  tableBox.append(make('summary', { text: 'Head table: metrics and roles (click a row to open the head)' }), tableKind, table);

  root.append(summary, options, hint, hover, main, tableBox);

  // ---- grid
  function drawAll() {
    views = drawGrids(grids, result, { words: state.words, nospecial: state.nospecial },
      { onOpen: openDetail, onHover: showHoverName, roles });
    const notes = [...new Set(Object.values(views).map((v) => v.note).filter(Boolean))];
    transform.textContent = notes.length ? `Transformed view: ${notes.join('; ')}` : '';
    if (!detail.hidden) drawDetail();
  }

  function showHoverName(kind, layer, head) {
    const r = roles(kind, layer, head);
    hover.textContent = `${headName(layer, head)} (${kind})${r.length ? `: ${r.join(', ')}` : ''}`;
  }

  // ---- detail
  function openDetail(kind, layer, head) {
    Object.assign(state, { kind, layer, head });
    detail.hidden = false;
    drawDetail();
  }

  function drawDetail() {
    const view = views[state.kind];
    const { layer, head } = state;
    for (const c of grids.querySelectorAll('canvas.head.hs-open')) c.classList.remove('hs-open');
    grids.querySelector(`canvas.head[data-kind="${CSS.escape(state.kind)}"][data-layer="${layer}"][data-head="${head}"]`)
      ?.classList.add('hs-open');
    title.textContent = `${headName(layer, head)} · ${state.kind}`;
    badges.replaceChildren(...roles(state.kind, layer, head).map((r) => make('span', { text: r, className: 'badge' })));
    const matrix = view.matrix(layer, head);
    const { max: zmax, skipped } = colourMax(view, matrix);
    const over = skipped ? ' in the rows with a choice (the first row sees only its own key: drawn at full colour)' : '';
    note.textContent = [view.note && `Transformed view: ${view.note}.`,
      `Rows are queries, columns keys. Colour from 0 to this head's largest weight${over}, ${zmax.toFixed(3)}; `
      + `values are 8-bit (within ${(zmax / 510).toFixed(4)}). Hover for a value. The arrow buttons, or the arrow `
      + 'keys once the heatmap has focus, move between heads.']
      .filter(Boolean).join(' ');
    geometry = { ...drawMatrix(heatmap, { matrix, rows: view.rows, cols: view.cols, zmax }), matrix, view };
    const { left, top, cell } = geometry; // where the cells are, for tests that hover one
    Object.assign(heatmap.dataset, { kind: state.kind, layer, head, name: headName(layer, head), left, top, cell });
    tip.hidden = true;
  }

  function closeDetail() {
    detail.hidden = true;
    state.layer = state.head = null;
    for (const c of grids.querySelectorAll('canvas.head.hs-open')) c.classList.remove('hs-open');
  }

  function step(dLayer, dHead) {
    const view = views[state.kind];
    if (!view || state.layer === null) return;
    let layer = state.layer, head = state.head + dHead;
    if (head < 0) { head = view.H - 1; layer -= 1; }
    if (head >= view.H) { head = 0; layer += 1; }
    layer += dLayer;
    if (layer >= 0 && layer < view.L) openDetail(state.kind, layer, head);
  }

  heatmap.addEventListener('mousemove', (e) => {
    const box = heatmap.getBoundingClientRect();
    const x = e.clientX - box.left, y = e.clientY - box.top;
    const at = geometry && cellAt(geometry, x, y);
    tip.hidden = !at;
    if (!at) return;
    const { view, matrix } = geometry;
    tip.textContent = `${view.rows[at.i]} → ${view.cols[at.j]}: ${matrix[at.i * view.C + at.j].toFixed(3)}`;
    tip.style.left = `${x + 14}px`;
    tip.style.top = `${y + 10}px`;
  });
  heatmap.addEventListener('mouseleave', () => { tip.hidden = true; });
  detail.addEventListener('keydown', (e) => {
    const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] };
    if (moves[e.key]) step(...moves[e.key]);
    if (e.key === 'Escape') closeDetail();
    if (moves[e.key] || e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); } // not Jupyter's cell keys
  });

  // ---- head table
  function drawTable() {
    const kind = tableKind.value;
    const names = Object.keys(result.metrics);
    const value = (r, key) => (key === 'name' ? r.layer * 1e4 + r.head : key === 'roles' ? r.roles.join(',') : r.metrics[key]);
    const list = [...result.heads[kind]].sort((a, b) => {
      const va = value(a, sort.key), vb = value(b, sort.key);
      if (va === null || vb === null) return va === vb ? 0 : va === null ? 1 : -1; // n/a last
      const c = va < vb ? -1 : va > vb ? 1 : 0;
      return sort.descending ? -c : c;
    });
    const header = make('tr');
    for (const key of ['name', 'roles', ...names]) {
      const arrow = sort.key === key ? (sort.descending ? ' ▼' : ' ▲') : '';
      const th = make('th', { attrs: { 'data-key': key, title: result.metrics[key] || '' } });
      const b = make('button', { text: (key === 'name' ? 'head' : key) + arrow, attrs: { type: 'button' } });
      b.addEventListener('click', () => {
        sort.descending = sort.key === key ? !sort.descending : key !== 'name';
        sort.key = key;
        drawTable();
      });
      th.append(b);
      header.append(th);
    }
    const thead = make('thead');
    thead.append(header);
    const tbody = make('tbody');
    tbody.append(...list.map((r) => {
      const tr = make('tr', { attrs: { 'data-kind': kind, 'data-layer': r.layer, 'data-head': r.head } });
      const cell = make('td');
      cell.append(...r.roles.map((role) => make('span', { text: role, className: 'badge' })));
      tr.append(make('td', { text: r.name }), cell);
      for (const m of names) tr.append(make('td', { text: fmt(r.metrics[m]), className: 'num' }));
      tr.addEventListener('click', () => openDetail(kind, r.layer, r.head));
      return tr;
    }));
    table.replaceChildren(thead, tbody);
  }

  // ---- wiring
  for (const [box, key] of [[words.input, 'words'], [nospecial.input, 'nospecial']]) {
    box.addEventListener('change', () => { state[key] = box.checked; drawAll(); });
  }
  tableKind.addEventListener('change', drawTable);
  drawAll();
  drawTable();
}
