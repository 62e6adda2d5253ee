// The Heads tab for an image answer (one with `image`): per head, what the class token reads, laid over the picture
// the model saw (lib/overlay.js), in a layer x head grid like the matrices' grid below it. Hovering a patch of any
// overlay shows that patch's row in every head of its kind instead (and outlines the patch); leaving shows the class
// token's again. The rollout's class-token row is drawn over the picture too (drawRolloutOverlay).
//   section.overlay-grid[data-kind][data-state]   one per kind; data-state "ready" once every overlay is painted
import { make } from './dom.js';
import { headName } from './grid.js';
import { rawMatrix } from './views.js';
import { drawSeen, paintOverlay, patchAt, patchMap, patchName, patchRow, picture } from './overlay.js';

// `result.image` as the answer gives it; `onOpen(kind, layer, head)` on a click, `onHover(kind, layer, head)`.
export function drawImageGrids(container, result, { onOpen, onHover }) {
  container.replaceChildren();
  const image = result.image;
  if (!image) return;
  container.append(seenFigure(result));
  const full = result.full ?? result; // the full-resolution answer when the grid's is max-pooled (main.js)
  for (const kind of Object.keys(result.kinds)) {
    const kd = full.kinds[kind];
    const section = make('section', { className: 'overlay-grid', attrs: { 'data-kind': kind, 'data-state': 'loading',
      'data-pool': kd.pool.join('x') } });
    section.append(make('h3', { text: `${kind}: what the class token reads, over the picture` }));
    const map = patchMap(image, kd);
    if (map.why) {
      section.append(make('p', { className: 'hint', text: `No overlay for ${kind}: ${map.why}.` }));
      section.dataset.state = 'none';
      container.append(section);
      continue;
    }
    const what = result.weights?.label || 'attention';
    const status = make('p', { className: 'hover-name overlay-status', attrs: { 'aria-live': 'polite' } });
    section.append(make('p', { className: 'hint', text: `Each picture is one head: the class token's ${what} to each `
      + `patch (its row without itself, on the ${map.rows} × ${map.cols} patch grid), orange over the picture, shaded to `
      + 'the row\'s own maximum. Hover a patch to see that patch\'s row instead; click to open the head.' }), status);
    const grid = make('div', { className: 'grid overlays' });
    grid.style.gridTemplateColumns = `auto repeat(${kd.H}, minmax(40px, 96px))`;
    grid.append(make('span'));
    for (let h = 0; h < kd.H; h++) grid.append(make('span', { text: `H${h}`, className: 'axis' }));
    const cells = [];
    for (let l = 0; l < kd.L; l++) {
      grid.append(make('span', { text: `L${l}`, className: 'axis' }));
      for (let h = 0; h < kd.H; h++) {
        const name = headName(l, h);
        const canvas = make('canvas', { className: 'overlay', attrs: { 'data-kind': kind, 'data-layer': l, 'data-head': h,
          'data-name': name, title: name, 'aria-label': `${name}: the class token's attention over the picture`, tabindex: 0, role: 'button' } });
        canvas.addEventListener('click', () => onOpen(kind, l, h));
        canvas.addEventListener('keydown', (e) => { if (e.key === 'Enter') onOpen(kind, l, h); });
        canvas.addEventListener('mouseenter', () => onHover(kind, l, h));
        cells.push({ canvas, matrix: rawMatrix(kd, l, h) });
        grid.append(canvas);
      }
    }
    section.append(grid);
    container.append(section);
    let img = null, hovered = -1;
    const paint = (k) => {
      hovered = k;
      const query = k < 0 ? map.cls : map.positions[k];
      for (const { canvas, matrix } of cells) paintOverlay(canvas, img, map, patchRow(matrix, kd.Tk, map, query), query, k);
      status.textContent = k < 0 ? 'Showing the class token\'s row.'
        : `Showing the row of ${patchName(kd.rows.tokens, map, k)}: what that patch reads.`;
    };
    paint(-1);
    for (const { canvas } of cells) {
      canvas.addEventListener('mousemove', (e) => { const k = patchAt(canvas, map, e); if (k !== hovered) paint(k); });
      canvas.addEventListener('mouseleave', () => paint(-1));
    }
    picture(image).then((loaded) => { img = loaded; paint(hovered); section.dataset.state = 'ready'; },
      (e) => { status.textContent = e.message; section.dataset.state = 'error'; });
  }
}

// The picture the model saw, large, with its patch grid, its prediction and whether it was inverted.
function seenFigure(result) {
  const image = result.image;
  const figure = make('figure', { className: 'seen' });
  const canvas = make('canvas', { className: 'seen-image', attrs: { 'aria-label': 'the picture the model saw' } });
  const [h, w] = image.size;
  const [rows, cols] = image.patch_grid;
  figure.append(canvas, make('figcaption', { className: 'hint', text: `What the model saw: ${h} × ${w} pixels`
    + `${image.inverted ? ' (inverted: the picture was mostly bright, and the model reads bright ink on dark)' : ''}, `
    + `cut into ${rows} × ${cols} patches of ${image.patch_size.join(' × ')} pixels, read row by row after the class token.` }));
  const kd = Object.values((result.full ?? result).kinds)[0];
  const map = kd ? patchMap(image, kd) : { why: 'no kind' };
  picture(image).then((img) => drawSeen(canvas, img, map.why ? { rows, cols } : map), () => {});
  return figure;
}

// The rollout's class-token row over the picture, per kind that has a rollout (the answer's `rollout`).
export function drawRolloutOverlay(container, result) {
  const full = result.full ?? result; // full resolution, as the overlays of drawImageGrids
  if (!result.image || !full.rollout) return;
  for (const [kind, r] of Object.entries(full.rollout)) {
    const kd = full.kinds[kind];
    const map = kd && patchMap(result.image, { ...kd, Tk: r.Tk, pool: [1, 1] });
    const section = make('section', { className: 'rollout-image', attrs: { 'data-kind': kind } });
    section.append(make('h4', { text: `${kind}: the rollout's class-token row over the picture` }));
    if (!map || map.why) {
      section.append(make('p', { className: 'hint', text: `Not drawn over the picture: ${map ? map.why : 'no such kind'}.` }));
    } else {
      const canvas = make('canvas', { className: 'rollout-overlay', attrs: { 'data-kind': kind } });
      const row = patchRow(r.values, r.Tk, map, map.cls);
      paintOverlay(canvas, null, map, row, map.cls);
      picture(result.image).then((img) => paintOverlay(canvas, img, map, row, map.cls), () => {});
      section.append(canvas, make('p', { className: 'hint', text: `How much of each patch has reached the class token after `
        + `the last layer (its own share, ${row.cls.toFixed(3)}, not drawn), shaded to the largest.` }));
    }
    container.append(section);
  }
}
