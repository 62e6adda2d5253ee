// The Compare tab: two heads of the answer on screen side by side with their difference, or one head on a
// second sentence (asked for as the first was: weights, ablation, generation).
import { elements, make } from '../lib/dom.js';
import { fetchAttention } from '../lib/api.js';
import { DIVERGING } from '../lib/colors.js';
import { drawHeatmap, loadPlotly } from '../lib/heatmap.js';
import { headName } from '../lib/grid.js';
import { makeView } from '../lib/views.js';
import { fillKindSelect } from '../lib/sources.js';
import { register } from '../lib/registry.js';

const el = elements(['compare-kind', 'compare-a', 'compare-b', 'compare-heads', 'compare-text', 'compare-texts', 'compare-plots']);

// The URL keeps the two heads compared and their kind: &compare=L0H2,L1H4&compare_kind=encoder.
let fromUrl = null; // {a, b, kind} a link asked for, drawn once an answer is on screen
let compared = null; // {a, b, kind} on screen

function setup(page) {
  el.compareHeads.addEventListener('click', () => drawCompareHeads(page));
  el.compareTexts.addEventListener('click', () => drawCompareTexts(page));
}

function readUrl(q) {
  const heads = (q.get('compare') || '').split(',');
  if (heads.length !== 2) return false;
  fromUrl = { a: heads[0], b: heads[1], kind: q.get('compare_kind') };
  el.compareA.value = fromUrl.a;
  el.compareB.value = fromUrl.b;
  return false;
}

function writeUrl(q) {
  if (!compared) return;
  q.set('compare', `${compared.a},${compared.b}`);
  q.set('compare_kind', compared.kind);
}

function analysed(page) {
  if (!page.result) { compared = null; return; }
  fillKindSelect(el.compareKind, Object.keys(page.result.kinds));
  if (fromUrl?.kind && Object.hasOwn(page.result.kinds, fromUrl.kind)) el.compareKind.value = fromUrl.kind;
}

function draw(page) {
  if (!fromUrl || !page.result) return;
  fromUrl = null;
  drawCompareHeads(page);
}

function parseHead(text, view) {
  const m = /^\s*L(\d+)\s*H(\d+)\s*$/i.exec(text || '');
  if (!m || +m[1] >= view.L || +m[2] >= view.H) return null;
  return { layer: +m[1], head: +m[2] };
}

function plotBox(title) {
  const box = make('div', { className: 'compare-box' });
  const div = make('div', { className: 'plot' });
  box.append(div);
  el.comparePlots.append(box);
  return { div, title };
}

async function drawCompareHeads(page) {
  const { result, views, setStatus } = page;
  if (!result) return setStatus('Analyze a text first.', 'error');
  const kind = el.compareKind.value || Object.keys(views)[0];
  const view = views[kind];
  const a = parseHead(el.compareA.value, view), b = parseHead(el.compareB.value, view);
  if (!a || !b) return setStatus(`Name two heads like L0H2, with layer < ${view.L} and head < ${view.H}.`, 'error');
  const ma = view.matrix(a.layer, a.head), mb = view.matrix(b.layer, b.head);
  const diff = ma.map((v, i) => v - mb[i]);
  const zmax = Math.max(...ma, ...mb);
  const dmax = Math.max(1e-6, ...diff.map(Math.abs));
  el.comparePlots.replaceChildren();
  const na = headName(a.layer, a.head), nb = headName(b.layer, b.head);
  const boxes = [plotBox(na), plotBox(nb), plotBox(`${na} − ${nb}`)];
  await loadPlotly();
  await Promise.all([
    drawHeatmap(boxes[0].div, { matrix: ma, rows: view.rows, cols: view.cols, title: `${na} (${kind})`, zmax,
      colorbarTitle: result.weights.label }),
    drawHeatmap(boxes[1].div, { matrix: mb, rows: view.rows, cols: view.cols, title: `${nb} (${kind})`, zmax,
      colorbarTitle: result.weights.label }),
    drawHeatmap(boxes[2].div, { matrix: diff, rows: view.rows, cols: view.cols, title: `${na} − ${nb}`,
      zmin: -dmax, zmax: dmax, colorscale: DIVERGING, colorbarTitle: 'difference' }),
  ]);
  el.comparePlots.dataset.compared = `${na} ${nb}`;
  compared = { a: na, b: nb, kind };
  page.writeState();
  setStatus(`Comparing ${na} and ${nb}${view.note ? ` (${view.note})` : ''}.`);
}

async function drawCompareTexts({ result, views, state, request, setStatus }) {
  if (!result) return setStatus('Analyze a text first.', 'error');
  if (result.image) { // an image answer: a second input would be a picture, and this compares sentences
    return setStatus(`Comparing sentences needs a text model: ${result.model} takes a picture. Compare two heads above instead.`, 'error');
  }
  const kind = el.compareKind.value || Object.keys(views)[0];
  const view = views[kind];
  const a = parseHead(el.compareA.value, view);
  if (!a) return setStatus(`Name head A like L0H2, with layer < ${view.L} and head < ${view.H}.`, 'error');
  const text = el.compareText.value;
  if (!text.trim()) return setStatus('Type a second sentence.', 'error');
  let other;
  try {
    other = await fetchAttention({ ...request, text }); // as the first text was asked: weights, ablation, generation
  } catch (e) {
    return setStatus(e.message, 'error');
  }
  const otherView = makeView(other.kinds[kind], other, { words: state.words, nospecial: state.nospecial });
  const name = headName(a.layer, a.head);
  el.comparePlots.replaceChildren();
  const boxes = [plotBox(), plotBox()];
  await loadPlotly();
  const m1 = view.matrix(a.layer, a.head), m2 = otherView.matrix(a.layer, a.head);
  const zmax = Math.max(...m1, ...m2);
  await Promise.all([
    drawHeatmap(boxes[0].div, { matrix: m1, rows: view.rows, cols: view.cols, title: `${name} on sentence 1`, zmax,
      colorbarTitle: result.weights.label }),
    drawHeatmap(boxes[1].div, { matrix: m2, rows: otherView.rows, cols: otherView.cols, title: `${name} on sentence 2`, zmax,
      colorbarTitle: result.weights.label }),
  ]);
  el.comparePlots.dataset.compared = `${name} on two sentences`;
  setStatus(`${name} on two sentences.`);
}

register(import.meta.url, { setup, readUrl, writeUrl, analysed, draw });
