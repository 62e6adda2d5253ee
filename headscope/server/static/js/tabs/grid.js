// The Heads tab: every layer x head of every attention kind at once (lib/grid.js), the hover line, "fit on
// screen", the attention rollout under the grid (lib/rollout.js) and the ablated heads marked (lib/ablate.js).
// A click opens a head in the detail dialog, or in ablate mode knocks it out (or back in) and runs the text again.
import { el, elements } from '../lib/dom.js';
import { drawGrids, headName, highlightRow, labelRoles } from '../lib/grid.js';
import { drawRollout } from '../lib/rollout.js';
import { ablate, markGrid, toggleHead } from '../lib/ablate.js';
import { register } from '../lib/registry.js';
import { drawImageGrids, drawRolloutOverlay } from '../lib/imagegrid.js';
import { drawnOnPad, takesImage } from '../lib/imageinput.js';

const own = elements(['grids', 'hover-name', 'rollout', 'intro', 'intro-example', 'intro-text', 'image-grids',
  'layer-range-controls', 'layer-from', 'layer-to', 'layer-all', 'layer-range-note']);

// The layers shown (URL `layers=FIRST-LAST`, both included), or null for all: a 30-layer model's 270 heads fit on
// screen at a readable size only a few layers at a time.
let layers = null;
const RANGE = /^(\d+)-(\d+)$/;

function readUrl(q) {
  const m = (q.get('layers') || '').match(RANGE);
  layers = m && +m[1] <= +m[2] ? [+m[1], +m[2]] : null;
  fillBoxes();
  return false;
}

function writeUrl(q) {
  if (layers) q.set('layers', layers.join('-'));
}

// The boxes hold what the link or the user said (an empty "to": to the last layer).
function fillBoxes() {
  own.layerFrom.value = layers ? layers[0] : '';
  own.layerTo.value = layers ? layers[1] : '';
}

// The answer's own layer count: the deepest kind's (null before an answer).
const depth = (page) => (page.result ? Math.max(...Object.values(page.result.kinds).map((k) => k.L)) : null);

// The note says the range against that count.
function showRange(page) {
  const most = depth(page);
  if (most !== null) { own.layerFrom.max = own.layerTo.max = most - 1; }
  own.layerAll.disabled = !layers;
  own.layerRangeNote.textContent = most === null ? '' : layers
    ? `showing layers ${layers[0]}–${Math.min(layers[1], most - 1)} of 0–${most - 1}` : `all ${most} layers`;
}

function rangeChanged(page) {
  const [a, b] = [own.layerFrom.value, own.layerTo.value];
  const most = page.result ? depth(page) - 1 : Infinity; // the last layer
  layers = a === '' && b === '' ? null : [Math.max(0, a === '' ? 0 : +a), Math.min(most, b === '' ? most : +b)];
  if (layers && layers[0] > layers[1]) layers = [layers[1], layers[0]];
  if (layers && layers[0] === 0 && layers[1] === most) layers = null; // every layer: no range
  page.writeState();
  analysed(page);
}

// "fit on screen": thumbnails as large as lets every kind's whole grid fit below the controls, in
// the viewport (with every kind side by side where the width allows).
function fitGrids(page) {
  document.body.classList.toggle('fit', page.state.fit);
  if (!page.state.fit || !page.result) return;
  const kinds = Object.values(page.result.kinds);
  const top = own.grids.getBoundingClientRect().top + window.scrollY; // where the grids start on the page
  const heading = 48, gap = 3, axis = 28;
  const shown = (k) => (layers ? Math.max(0, Math.min(k.L - 1, layers[1]) - Math.max(0, layers[0]) + 1) : k.L);
  const rows = Math.max(...kinds.map(shown));
  const tall = (window.innerHeight - top - heading) / (rows + 1) - gap; // +1: the head-number row
  const wide = (own.grids.clientWidth - kinds.length * (axis + 32)) / kinds.reduce((n, k) => n + k.H, 0) - gap;
  own.grids.style.setProperty('--cell', `${Math.max(12, Math.floor(Math.min(tall, wide)))}px`);
}

function showHoverName(page, kind, layer, head) {
  const r = page.roles(kind, layer, head);
  own.hoverName.textContent = `${headName(layer, head)} (${kind})${r.length ? ': ' + r.join(', ') + ' (roles on this text)' : ''}`;
  own.hoverName.title = own.hoverName.textContent; // the line is cut to one line on a narrow screen
}

function openOrAblate(page, kind, layer, head) {
  if (!ablate.mode) return page.openDetail(kind, layer, head);
  toggleHead(kind, layer, head);
  markGrid(own.grids);
  markGrid(own.imageGrids);
  return page.analyze();
}

// Before the first answer: what a square is, and the chosen model's own example (its <option>'s data-example).
// For an image model (which has no example text): draw on the pad.
function showIntro(page) {
  own.intro.hidden = !!page.result;
  const example = el.model.selectedOptions[0]?.dataset.example || '';
  own.introExample.hidden = !example;
  own.introText.textContent = example ? `“${example}” on ${el.model.value}`
    : takesImage() ? `${el.model.value} takes a picture: ${drawnOnPad() ? 'draw on the pad above (or upload one)' : 'upload one above'} and press Analyze. `
      + 'Every head then shows here as its patch × patch matrix, and over the picture as what the class token reads.'
      : '';
}

function setup(page) {
  own.introExample.addEventListener('click', () => el.example.click());
  el.model.addEventListener('change', () => showIntro(page));
  showIntro(page);
  el.optFit.addEventListener('change', () => { page.state.fit = el.optFit.checked; page.writeState(); fitGrids(page); });
  window.addEventListener('resize', () => fitGrids(page));
  el.optAblate.addEventListener('change', () => { markGrid(own.grids); markGrid(own.imageGrids); });
  for (const box of [own.layerFrom, own.layerTo]) box.addEventListener('change', () => rangeChanged(page));
  own.layerAll.addEventListener('click', () => { layers = null; fillBoxes(); page.writeState(); analysed(page); });
  readUrl(new URLSearchParams(location.search));
}

function analysed(page) {
  own.hoverName.textContent = '';
  showIntro(page);
  const { result, views } = page;
  own.layerRangeControls.hidden = !result || takesImage();
  if (!result) {
    own.grids.replaceChildren(); own.rollout.replaceChildren(); own.rollout.hidden = true; own.imageGrids.replaceChildren();
    return;
  }
  drawImageGrids(own.imageGrids, result, { onOpen: (kind, layer, head) => openOrAblate(page, kind, layer, head),
    onHover: (kind, layer, head) => showHoverName(page, kind, layer, head) });
  showRange(page);
  drawGrids(own.grids, result, page.options, { views, roles: page.roles, layers,
    onOpen: (kind, layer, head) => openOrAblate(page, kind, layer, head),
    onHover: (kind, layer, head) => showHoverName(page, kind, layer, head) });
  markGrid(own.grids);
  markGrid(own.imageGrids);
  drawRollout(own.rollout, result, views);
  drawRolloutOverlay(own.rollout, result);
  fitGrids(page);
}

function headsArrived(page) {
  labelRoles(own.grids, page.roles);
  markGrid(own.grids); // the ablated heads' titles say so again
  markGrid(own.imageGrids);
}

// Kinds whose rows are the decoder's output positions: the step slider highlights one of them.
function stepped(page, row) {
  for (const view of Object.values(page.views).filter((v) => v.layout.rows === 'output_tokens')) {
    highlightRow(own.grids, view, Math.floor(row / view.pool[0]));
  }
  markGrid(own.grids); // repainting cleared the hatching of ablated heads
}

register(import.meta.url, { setup, analysed, headsArrived, stepped, readUrl, writeUrl });
