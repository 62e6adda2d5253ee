// Ablate mode: clicking a head in the grid knocks it out (and clicking again brings it back); the page
// fetches the answer again with `ablate` and shows the answer's `effect` beside the output. The set of
// heads and the ablation (one of the page config's `ablation.modes`) live in the URL:
// ?ablate=encoder:2:5,cross:0:1&ablation=mean (the server's default mode is left out). On a causal LM the effect
// can also score one metric (POST /api/attention's metric, span, answer, wrong): ab_metric=logit_diff&ab_answer=
// %20Paris&ab_wrong=%20London, or ab_metric=loss&ab_span=17,33 (names of their own: the Patching tab's URL has
// `metric`, `answer` and `wrong`).
// The effect panel is drawn from the answer's own description (effect.measures: each measure's axis
// and meaning), never from the names of kinds or measures.
import { config } from './config.js';
import { el, make } from './dom.js';
import { headName } from './grid.js';
import { metricFields, showMetricInputs } from './metricchoice.js';

// heads: ["kind:layer:head", ...]; metric: {name ('' for none), span: [start, end] or null, answer, wrong}
export const ABLATE_FIELDS = ['ablate', 'ablation', 'metric', 'span', 'answer', 'wrong']; // what an error may name

export const ablate = { mode: false, heads: [], ablation: config.ablation.default,
  metric: { name: '', span: null, answer: '', wrong: '' } };

const HEAD = /^([^:,]+):(\d+):(\d+)$/;

export function readAblate(q) {
  ablate.heads = (q.get('ablate') || '').split(',').filter((h) => HEAD.test(h));
  ablate.heads = [...new Set(ablate.heads)];
  ablate.mode = ablate.heads.length > 0; // a link with heads knocked out opens in ablate mode, as it was made
  ablate.ablation = config.ablation.modes.includes(q.get('ablation')) ? q.get('ablation') : config.ablation.default;
  const name = q.get('ab_metric');
  const span = (q.get('ab_span') || '').match(/^(\d+),(\d+)$/);
  ablate.metric = { name: config.metric_choice.names.includes(name) ? name : '', span: span ? [+span[1], +span[2]] : null,
    answer: q.get('ab_answer') || '', wrong: q.get('ab_wrong') || '' };
}

export function writeAblate(q) {
  if (!ablate.heads.length) return;
  q.set('ablate', ablate.heads.join(','));
  if (ablate.ablation !== config.ablation.default) q.set('ablation', ablate.ablation);
  const m = ablate.metric;
  if (!m.name) return;
  q.set('ab_metric', m.name);
  if (m.name === 'loss' && m.span) q.set('ab_span', m.span.join(','));
  if (m.name !== 'loss' && m.answer) q.set('ab_answer', m.answer);
  if (m.name === 'logit_diff' && m.wrong) q.set('ab_wrong', m.wrong);
}

// The ablate controls' metric inputs (lib/metricchoice.js); a choice still missing a box is not sent yet.
const BOXES = { controls: el.ablateMetricControls, metric: el.ablateMetric, spanStart: el.ablateSpanStart,
  spanEnd: el.ablateSpanEnd, answer: el.ablateAnswer, wrong: el.ablateWrong };
const showMetricControls = () => showMetricInputs(BOXES);

function chosenMetric() {
  const fields = metricFields(BOXES);
  return typeof fields === 'string' ? {} : fields;
}

// The request's fields: {ablate: [{kind, layer, head}], ablation}, or nothing when no head is off.
export function ablateFields() {
  if (!ablate.heads.length) return {};
  return {
    ablate: ablate.heads.map((h) => {
      const [, kind, layer, head] = h.match(HEAD);
      return { kind, layer: +layer, head: +head };
    }),
    ablation: ablate.ablation,
    ...chosenMetric(),
  };
}

export function toggleHead(kind, layer, head) {
  const key = `${kind}:${layer}:${head}`;
  ablate.heads = ablate.heads.includes(key) ? ablate.heads.filter((h) => h !== key) : [...ablate.heads, key];
}

// A red slash across a head's painting, corner to corner (repainting the head removes it).
function hatch(canvas) {
  const ctx = canvas.getContext('2d');
  const { width: w, height: h } = canvas;
  ctx.save();
  ctx.strokeStyle = 'rgba(180, 35, 24, 0.9)';
  ctx.lineWidth = Math.max(1, Math.round(Math.max(w, h) / 12));
  ctx.beginPath();
  ctx.moveTo(0, h);
  ctx.lineTo(w, 0);
  ctx.stroke();
  ctx.restore();
}

// Mark the knocked-out heads in the grid: greyed, struck through, named "ablated" in their title and label.
export function markGrid(container) {
  for (const canvas of container.querySelectorAll('canvas.head, canvas.overlay')) { // overlay: lib/imagegrid.js
    const off = ablate.heads.includes(`${canvas.dataset.kind}:${canvas.dataset.layer}:${canvas.dataset.head}`);
    canvas.classList.toggle('ablated', off);
    if (off) canvas.dataset.ablated = '1'; else delete canvas.dataset.ablated;
    const name = canvas.dataset.name;
    const base = canvas.title.replace(/; ablated .*$/, '') || name; // the head's name and roles (grid.js)
    canvas.title = off ? `${base}; ablated (${ablate.ablation}); click in ablate mode to restore` : base;
    canvas.setAttribute('aria-label', off ? `${name} (ablated)` : name);
    if (off && canvas.classList.contains('head')) hatch(canvas); // an overlay is repainted on hover: its outline says it
  }
  document.body.classList.toggle('ablate-mode', ablate.mode);
}

// Four decimals, or three significant digits for numbers too small for them (a confident model's log-probabilities).
function number(v) {
  if (v === null || v === undefined) return '–';
  if (typeof v !== 'number') return String(v);
  return v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential(2) : v.toFixed(4);
}

function valueCell(tag, value) {
  const cell = make(tag, { text: number(value) });
  cell.dataset.value = value === null ? '' : String(value);
  return cell;
}

// The effect beside the output: single measures as lines, per-position measures as one table per axis.
export function drawEffect(result) {
  const effect = result && result.effect;
  el.effect.hidden = !effect;
  if (!effect) { el.effectMeasures.replaceChildren(); el.effectHeads.textContent = ''; return; }
  const heads = result.ablate.map((h) => `${h.kind} ${headName(h.layer, h.head)}`).join(', ');
  el.effectHeads.textContent = `Heads ablated (${result.ablation}): ${heads}. Effect against the same text with no head ablated:`;
  const parts = [];
  const byAxis = new Map();
  for (const [name, m] of Object.entries(effect.measures)) {
    if (name === 'metric') { parts.push(metricLine(effect.metric, m.meaning)); continue; }
    if (m.axis === null) {
      const line = make('div', { className: 'effect-single', attrs: { 'data-measure': name, title: m.meaning } });
      line.append(make('span', { text: `${name}: `, className: 'effect-name' }), valueCell('span', effect[name]));
      if (typeof effect[name] === 'string' && typeof result[name] === 'string') {
        line.append(make('span', { text: ` (un-ablated: ${result[name]})`, className: 'effect-was' }));
      }
      parts.push(line);
    } else {
      if (!byAxis.has(m.axis)) byAxis.set(m.axis, []);
      byAxis.get(m.axis).push(name);
    }
  }
  for (const [axis, names] of byAxis) {
    const tokens = result[axis] || [];
    const table = make('table', { className: 'effect-table numbers', attrs: { 'data-axis': axis } });
    const head = make('tr');
    head.append(make('th', { text: 'position' }), make('th', { text: axis }));
    for (const name of names) head.append(make('th', { text: name, attrs: { title: effect.measures[name].meaning } }));
    table.append(make('thead'), make('tbody'));
    table.tHead.append(head);
    const rows = Math.min(...names.map((n) => effect[n].length));
    for (let i = 0; i < rows; i++) {
      const tr = make('tr', { attrs: { 'data-position': i } });
      tr.append(make('td', { text: String(i) }), make('td', { text: tokens[i] ?? '' }));
      for (const name of names) {
        const cell = valueCell('td', effect[name][i]);
        cell.dataset.measure = name;
        tr.append(cell);
      }
      table.tBodies[0].append(tr);
    }
    const wrap = make('div', { className: 'effect-scroll' });
    wrap.append(table);
    parts.push(wrap);
  }
  el.effectMeasures.replaceChildren(...parts);
}

// The chosen metric before and after, in its own units and words (effect.metric: name, where, span, answer, wrong,
// units, before, after, change); the tokens are shown literally, as the model's tokens.
function metricLine(metric, meaning) {
  const line = make('div', { className: 'effect-single effect-metric', attrs: { 'data-measure': 'metric', title: meaning } });
  line.dataset.before = String(metric.before);
  line.dataset.after = String(metric.after);
  const token = (t) => JSON.stringify(t.token);
  const what = metric.name === 'loss' ? `loss over ${metric.where}`
    : metric.name === 'prob' ? `probability of ${token(metric.answer)} at ${metric.where}`
      : `logit(${token(metric.answer)}) − logit(${token(metric.wrong)}) at ${metric.where}`;
  line.append(make('span', { text: `${metric.name}: `, className: 'effect-name' }),
    make('span', { text: `${number(metric.before)} → ${number(metric.after)}, change ` }), valueCell('span', metric.change),
    make('span', { text: ` ${metric.units} (${what})`, className: 'effect-was' }));
  return line;
}

// The server refused the ablation (a head this model lacks, say from an old link): say so where the effect
// would be, keeping "Restore all heads" at hand.
export function drawAblateError(message) {
  el.effect.hidden = false;
  el.effectHeads.textContent = `Cannot ablate ${ablate.heads.join(', ')}: ${message}.`;
  el.effectMeasures.replaceChildren();
}

// Wire the toggle, the choice of mode and the "restore all" button; `changed()` re-runs the analysis. (The grid
// marks its heads itself when the toggle changes: static/js/tabs/grid.js.)
export function setupAblate(changed) {
  el.optAblate.checked = ablate.mode;
  el.ablationMode.value = ablate.ablation;
  const m = ablate.metric;
  el.ablateMetric.value = m.name;
  [el.ablateSpanStart.value, el.ablateSpanEnd.value] = m.span ? m.span.map(String) : ['', ''];
  el.ablateAnswer.value = m.answer;
  el.ablateWrong.value = m.wrong;
  showMetricControls();
  const metricChanged = () => {
    const [start, end] = [el.ablateSpanStart.value, el.ablateSpanEnd.value];
    ablate.metric = { name: el.ablateMetric.value, span: start !== '' && end !== '' ? [+start, +end] : null,
      answer: el.ablateAnswer.value, wrong: el.ablateWrong.value };
    showMetricControls();
    if (ablate.heads.length) changed();
  };
  for (const box of [el.ablateMetric, el.ablateSpanStart, el.ablateSpanEnd, el.ablateAnswer, el.ablateWrong]) {
    box.addEventListener('change', metricChanged);
  }
  el.model.addEventListener('change', showMetricControls);
  el.optAblate.addEventListener('change', () => { ablate.mode = el.optAblate.checked; });
  el.ablationMode.addEventListener('change', () => {
    ablate.ablation = el.ablationMode.value;
    if (ablate.heads.length) changed();
  });
  el.ablateClear.addEventListener('click', () => { ablate.heads = []; changed(); });
}
