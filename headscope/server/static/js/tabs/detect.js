// The Detect tab: POST /api/detect scores every head against the ideal patterns of the standard detectors
// (previous-token, duplicate-token, induction) on seeded inputs; drawn here as one layers x heads heatmap per kind
// and detector (axes read from the answer's `dims`), the heads above the answer's threshold, and the inputs.
import { el as shell, elements, make } from '../lib/dom.js';
import { runDetect } from '../lib/api.js';
import { byRows } from '../lib/dims.js';
import { drawHeatmap } from '../lib/heatmap.js';
import { register } from '../lib/registry.js';

const el = { model: shell.model, ...elements(['detect-seed', 'detect-sequences', 'detect-run', 'detect-status',
  'detect-found', 'detect-plots', 'detect-inputs']) };
const FIELDS = { seed: el.detectSeed, sequences: el.detectSequences }; // URL name -> its box

let page = null;
let running = null; // the AbortController of the request in flight
let runOnArrival = false; // a link with the tab's fields runs it when the tab opens

function setStatus(text, kind = 'info') {
  el.detectStatus.textContent = text;
  el.detectStatus.dataset.kind = kind;
}

function clear() {
  el.detectPlots.replaceChildren();
  el.detectFound.replaceChildren();
  el.detectInputs.hidden = true;
}

async function drawScores(kind, detector, scores, result) {
  const rows = byRows(scores, result.dims, 'layer'); // [layer][head]
  const L = rows.length, H = rows[0].length;
  const box = make('div', { className: 'plot', attrs: { 'data-kind': kind, 'data-detector': detector } });
  el.detectPlots.append(box);
  await drawHeatmap(box, {
    matrix: Float32Array.from(rows.flat()),
    rows: [...Array(L).keys()].map((l) => `L${l}`), cols: [...Array(H).keys()].map((h) => `H${h}`),
    title: `${detector} (${kind}): ${result.detectors[detector]}`,
    zmin: 0, zmax: 1, colorbarTitle: 'score', xTitle: 'head', yTitle: 'layer', joiner: '',
  });
}

function drawFound(result) {
  const lines = [];
  for (const [kind, detectors] of Object.entries(result.found)) {
    for (const [detector, heads] of Object.entries(detectors)) {
      const li = make('li', { attrs: { 'data-kind': kind, 'data-detector': detector } });
      li.textContent = `${detector} (${kind}): ` + (heads.length
        ? heads.map((h) => `${h.name} ${h.score.toFixed(2)}`).join(', ')
        : `no head scores ${result.threshold} or more`);
      lines.push(li);
    }
  }
  el.detectFound.replaceChildren(make('ul', {}));
  el.detectFound.firstChild.append(...lines);
}

function drawInputs(result) {
  const box = el.detectInputs.querySelector('div');
  box.replaceChildren();
  for (const [name, texts] of Object.entries(result.inputs)) {
    box.append(make('h4', { text: `${name} (${result.used[name]} of ${texts.length} scored)` }));
    const list = make('ol', {});
    list.append(...texts.map((t) => make('li', { text: t }))); // user-visible text, shown literally
    box.append(list);
  }
  el.detectInputs.hidden = false;
}

async function run() {
  running?.abort();
  running = new AbortController();
  const body = { model: el.model.value, seed: Number(el.detectSeed.value), sequences: Number(el.detectSequences.value) };
  clear();
  el.detectPlots.dataset.state = 'running';
  setStatus(`Scoring every head of ${body.model} on seed ${body.seed}…`);
  let result;
  try {
    result = await runDetect(body, running.signal);
  } catch (e) {
    if (e.name === 'AbortError') return;
    el.detectPlots.dataset.state = 'error';
    return setStatus(e.message, 'error');
  }
  drawFound(result);
  for (const [kind, detectors] of Object.entries(result.scores)) {
    for (const [detector, scores] of Object.entries(detectors)) if (scores) await drawScores(kind, detector, scores, result);
  }
  drawInputs(result);
  setStatus(`${result.model}, seed ${result.seed}: heads scoring ${result.threshold} or more are named above.`);
  el.detectPlots.dataset.state = 'ready';
}

function readUrl(q) {
  for (const [name, box] of Object.entries(FIELDS)) if (q.get(name) !== null) box.value = q.get(name);
  runOnArrival = q.get('seed') !== null;
  return false;
}

function writeUrl(q) {
  for (const [name, box] of Object.entries(FIELDS)) {
    if (box.value !== String(page.config.detect.defaults[name])) q.set(name, box.value);
  }
}

function setup(p, tab) {
  page = p;
  el.detectRun.addEventListener('click', () => { page.writeState(); run(); });
  for (const box of Object.values(FIELDS)) box.addEventListener('change', () => { if (page.state.tab === tab.name) page.writeState(); });
  el.model.addEventListener('change', () => { running?.abort(); clear(); setStatus(''); });
}

function draw() {
  if (runOnArrival) {
    runOnArrival = false;
    run();
  }
}

register(import.meta.url, { setup, draw, readUrl, writeUrl });
