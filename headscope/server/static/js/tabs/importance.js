// The Importance tab: POST /api/importance, streamed. Each head's importance (how much worse the model's quality
// measure gets when that head alone is ablated) as one layer × head heatmap per attention kind, and the pruning
// curve: the measure as heads are ablated together, least important first. Everything the plots say (the
// measure's name, direction, units, the formula) comes from the answer itself.
import { el as shell, elements, make } from '../lib/dom.js';
import { fetchStream } from '../lib/api.js';
import { DIVERGING } from '../lib/colors.js';
import { byRows } from '../lib/dims.js';
import { escapeLabel, loadPlotly } from '../lib/heatmap.js';
import { metricApplies, metricFields, showMetricInputs } from '../lib/metricchoice.js';
import { register } from '../lib/registry.js';

const el = { model: shell.model, ...elements(['imp-ablation', 'imp-texts', 'imp-run', 'imp-cancel', 'imp-progress', 'imp-status',
  'imp-measure', 'imp-maps', 'imp-curve', 'imp-metric-controls', 'imp-metric', 'imp-span-start', 'imp-span-end', 'imp-answer',
  'imp-wrong']) };
// The metric choice (POST /api/importance metric, span, answer, wrong) and its URL names; shown only for models whose
// generation (their <option>'s data-generation, from GET /api/models) is one config.metric_choice.generations lists.
const METRIC_FIELDS = { imp_metric: 'impMetric', imp_start: 'impSpanStart', imp_end: 'impSpanEnd', imp_answer: 'impAnswer',
  imp_wrong: 'impWrong' };
let page = null;

const BOXES = { controls: el.impMetricControls, metric: el.impMetric, spanStart: el.impSpanStart, spanEnd: el.impSpanEnd,
  answer: el.impAnswer, wrong: el.impWrong }; // lib/metricchoice.js
const showMetricControls = () => showMetricInputs(BOXES);

const results = new Map(); // model name -> its last importance answer
let controller = null;
const PLOT = { displaylogo: false, responsive: true };
const fmt = (v) => (Math.abs(v) >= 0.01 || v === 0 ? v.toFixed(4) : v.toExponential(2));

function showStatus(text, state) {
  el.impStatus.textContent = text;
  el.impStatus.dataset.kind = state === 'error' ? 'error' : 'info'; // errors in red, as every status line
  document.body.dataset.importance = state;
}

function describe(result) {
  const m = result.measure;
  return `${result.model}, ablation ${result.ablation}: ${m.name} (${m.direction.replace(/_/g, ' ')}, ${m.units}), `
    + `${m.description}. Baseline ${fmt(result.baseline)}. Importance = ${result.importance_formula}.`;
}

// One kind's importance as a layer x head heatmap (its axes read from the answer's `dims`).
async function drawMap(Plotly, div, kind, result) {
  const z = byRows(result.importance[kind], result.dims, 'layer'); // [layer][head]
  const H = Math.max(...z.map((row) => row.length));
  const largest = Math.max(1e-12, ...z.flat().map(Math.abs));
  const trace = {
    type: 'heatmap', z, x: [...Array(H).keys()], y: [...z.keys()],
    customdata: byRows(result.ablated_quality[kind], result.dims, 'layer'),
    colorscale: DIVERGING, zmin: -largest, zmax: largest, xgap: 1, ygap: 1,
    texttemplate: H * z.length <= 150 ? '%{z:.3g}' : '', // the numbers in the cells, while they fit
    hovertemplate: `L%{y}H%{x}: importance %{z:.4g}<br>${escapeLabel(result.measure.name)} without it: %{customdata:.4g}<extra></extra>`,
    colorbar: { title: { text: 'importance', side: 'right' } },
  };
  const layout = {
    title: { text: `Importance, ${escapeLabel(kind)}` },
    xaxis: { title: { text: 'head' }, tickmode: 'array', tickvals: trace.x, ticktext: trace.x.map((h) => `H${h}`) },
    yaxis: { title: { text: 'layer' }, autorange: 'reversed', tickmode: 'array', tickvals: trace.y, ticktext: trace.y.map((l) => `L${l}`) },
    margin: { t: 40 },
  };
  await Plotly.react(div, [trace], layout, PLOT);
}

async function drawCurve(Plotly, result) {
  const { removed, quality } = result.curve;
  const m = result.measure;
  const trace = {
    type: 'scatter', mode: 'lines+markers', x: [...quality.keys()], y: quality,
    text: ['nothing removed', ...removed.map((h) => `last removed: ${escapeLabel(h.kind)} ${h.name}`)],
    hovertemplate: `%{x} heads removed (%{text}): ${escapeLabel(m.name)} %{y:.4g}<extra></extra>`,
  };
  const layout = {
    title: { text: `Pruning curve: ${escapeLabel(m.name)} as heads are removed, least important first` },
    xaxis: { title: { text: `heads removed (of ${removed.length})` } },
    yaxis: { title: { text: `${escapeLabel(m.name)} (${escapeLabel(m.units)}, ${m.direction.replace(/_/g, ' ')})` } },
    margin: { t: 40 },
  };
  await Plotly.react(el.impCurve, [trace], layout, PLOT);
}

// Draws the last answer for the model in the picker (nothing if it has none yet).
async function draw() {
  showMetricControls();
  const result = results.get(el.model.value);
  if (!result) {
    el.impMeasure.textContent = 'Press Measure to knock out every head in turn (this takes 1 + 2 × heads evaluations).';
    el.impMaps.replaceChildren();
    window.Plotly?.purge(el.impCurve); // Plotly's own state goes with its elements
    delete el.impMaps.dataset.model;
    return;
  }
  el.impMeasure.textContent = describe(result);
  const Plotly = await loadPlotly();
  const kinds = Object.keys(result.importance);
  const divs = kinds.map((kind) => make('div', { className: 'plot imp-map', attrs: { 'data-kind': kind } }));
  el.impMaps.replaceChildren(...divs);
  await Promise.all(kinds.map((kind, i) => drawMap(Plotly, divs[i], kind, result)));
  await drawCurve(Plotly, result); // Plotly.react updates the curve in place
  el.impMaps.dataset.model = result.model;
}

async function run(page) {
  const texts = el.impTexts.value.split(/\r?\n/).map((t) => t.trim()).filter(Boolean);
  const most = page.config.limits.importance_max_texts;
  if (texts.length > most) return showStatus(`${texts.length} texts: the limit is ${most} per run.`, 'error');
  const metric = metricFields(BOXES);
  if (typeof metric === 'string') return showStatus(metric, 'error');
  const request = { model: el.model.value, ablation: el.impAblation.value, stream: true, ...metric };
  if (texts.length) request.texts = texts;
  page.writeState();
  document.body.dataset.importanceRequest = JSON.stringify(request); // what was sent, for the browser tests
  controller = new AbortController();
  el.impRun.disabled = true;
  el.impCancel.disabled = false;
  el.impProgress.value = 0;
  showStatus('Preparing the measure…', 'running');
  try {
    const result = await fetchStream('/api/importance', request, (done, total) => {
      el.impProgress.max = total;
      el.impProgress.value = done;
      el.impStatus.textContent = `${done} / ${total} evaluations`;
    }, controller.signal);
    results.set(request.model, result);
    el.impProgress.value = el.impProgress.max;
    await draw();
    showStatus(`${result.evaluations} evaluations of ${result.measure.name} on ${result.measure.examples} examples.`, 'done');
  } catch (e) {
    if (e.name === 'AbortError') showStatus('Cancelled.', 'cancelled');
    else showStatus(e.message, 'error');
  } finally {
    el.impRun.disabled = false;
    el.impCancel.disabled = true;
  }
}

function readUrl(q, p) {
  page = p;
  for (const [name, key] of Object.entries(METRIC_FIELDS)) {
    const v = q.get(name);
    if (v === null) continue;
    if (el[key].tagName === 'SELECT' && ![...el[key].options].some((o) => o.value === v)) continue; // not offered
    el[key].value = v;
  }
  showMetricControls();
  return false;
}

function writeUrl(q) {
  if (!metricApplies() || !el.impMetric.value) return;
  for (const [name, key] of Object.entries(METRIC_FIELDS)) if (el[key].value !== '') q.set(name, el[key].value);
}

function setup(p, tab) {
  page = p;
  el.impRun.addEventListener('click', () => run(page));
  el.impCancel.addEventListener('click', () => controller?.abort());
  el.model.addEventListener('change', () => { showMetricControls(); if (page.state.tab === tab.name) page.redraw(); });
  el.impMetric.addEventListener('change', showMetricControls);
  for (const key of Object.values(METRIC_FIELDS)) {
    el[key].addEventListener('change', () => { if (page.state.tab === tab.name) page.writeState(); });
  }
  showMetricControls();
}

register(import.meta.url, { draw, setup, readUrl, writeUrl });
