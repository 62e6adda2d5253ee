// The page: reads its state from the URL, runs the analysis, shows the output, the effect of an ablation and the
// detail dialog, and runs the tabs. State in the URL (?text=&model=&layer=&head=&kind=&tab=&words=&nospecial=&step=
// &weights=&rollout=&ablate=&ablation=, and for an image model &draw= instead of &text=: the drawing, lib/digitpad.js)
// means any view can be shared, bookmarked and tested. An image model's input is the digit pad or an upload
// (lib/imageinput.js): the request then carries `image` instead of `text`, and the answer its `image`.
//
// The tabs are not written here: the page config (lib/config.js) lists them (headscope/server/tabs.py), the page
// runs each tab's module (static/js/tabs/NAME.js) before this one, and each registers its hooks (lib/registry.js).
// A tab has those of these hooks it needs, each called with `page` (below: the answer on screen, the URL state and
// what the page can do):
//   setup(page, tab)                   once, before the first analysis; `tab` is its config entry {name, label, …}
//   readUrl(q, page)                   at load, when the URL names this tab: read its own fields; return true
//                                      when it took kind/layer/head (then no detail dialog opens for them)
//   writeUrl(q, page)                  while it is the tab shown: write its own fields into the URL
//   ready(page) -> bool                whether draw can run now (default: always)
//   draw(page)                         it is shown, or page.redraw() was asked for while it is
//   analysed(page)                     the answer on screen changed (page.result, null once cleared) or its views
//                                      did (page.views: the word / special-token options), shown or not
//   headsArrived(page)                 the answer's per-head metrics and roles arrived (page.result.heads)
//   headOpened(page, kind, layer, head)  the detail dialog opened a head
//   stepped(page, row)                 the generation step slider chose an output row
import { config } from './lib/config.js';
import { el, make } from './lib/dom.js';
import { ApiError, fetchAttention, fetchFullAttention, fetchHead, fetchHeads } from './lib/api.js';
import { codePoints, colourMax, isPooled, makeView, makeViews, sliceCodePoints } from './lib/views.js';
import { headName } from './lib/grid.js';
import { drawHeatmap, loadPlotly } from './lib/heatmap.js';
import { ABLATE_FIELDS, ablate, ablateFields, drawAblateError, drawEffect, readAblate, setupAblate, writeAblate } from './lib/ablate.js';
import { registered } from './lib/registry.js';
import { drawingForUrl, drawnOnPad, drawPrediction, imageSource, loadDrawing, setupImageInput, showInputFor, takesImage,
  uploading } from './lib/imageinput.js';

const DEFAULT_TAB = config.tabs[0].name;
const state = { text: '', model: config.model, truncate: false, layer: null, head: null, kind: null,
  tab: config.tab, words: false, nospecial: false, fit: false, step: null, gen: null, weights: config.weights.default,
  rollout: false, draw: null };
const WEIGHTS = config.weights.kinds.map((w) => w.name); // what the grid can show (the request's `weights`)
const tabs = []; // [{tab: its config entry, module: its hooks}], in the config's order (findTabs)
let result = null; // the last /api/attention answer, decoded
let views = {}; // kind -> view of the answer (after the word / special-token options)
let controller = null;
let summary = ''; // the status line of the result on screen, shown again after other messages
let linkText = null; // the text the URL keeps when it is not state.text: the part read of a cut text, '' for none
// A link's URL travels twice in every request the page makes (the request line, and the Referer of its scripts and
// API calls), and the server refuses request lines and headers over max_header_bytes: a link holds a text only
// while its URL stays under a quarter of that.
const URL_BUDGET = Math.floor(config.limits.max_header_bytes / 4);
const LOW_PROB = 0.9; // output tokens the model gave less than this probability are marked unsure

// What every tab hook gets: the answer on screen, the state, and what the page can do.
const page = {
  config,
  state,
  get result() { return result; },
  get views() { return views; },
  get request() { return result && resultRequest(); },
  get generation() { return result && modelGeneration(result.model); },
  get options() { return { words: state.words, nospecial: state.nospecial }; },
  openDetail: (kind, layer, head) => openDetail(kind, layer, head),
  closeDetail: () => closeDetail(),
  setStatus: (text, kind) => setStatus(text, kind),
  writeState: () => writeState(),
  redraw: () => drawTab(),
  showTab: (name) => showTab(name),
  analyze: () => analyze(),
  roles: (kind, layer, head) => roles(kind, layer, head),
};

// Every loaded tab's `hook`, called with `args`.
function hook(name, ...args) {
  for (const { module } of tabs) module[name]?.(...args);
}

const shownTab = () => tabs.find((t) => t.tab.name === state.tab);

function readState() {
  const q = new URLSearchParams(location.search);
  const int = (name) => (q.has(name) && /^\d+$/.test(q.get(name)) ? +q.get(name) : null);
  state.text = q.get('text') || '';
  state.draw = q.get('draw');
  state.model = config.model; // the URL's model, checked by the server
  state.truncate = q.get('truncate') === '1';
  state.layer = int('layer');
  state.head = int('head');
  state.kind = q.get('kind');
  state.gen = int('gen');
  state.tab = config.tab; // the URL's tab, checked by the server
  if (shownTab()?.module.readUrl?.(q, page)) state.layer = state.head = null; // the tab took the head
  state.words = q.get('words') === '1';
  state.nospecial = q.get('nospecial') === '1';
  state.fit = q.get('fit') === '1';
  state.step = int('step');
  state.weights = WEIGHTS.includes(q.get('weights')) ? q.get('weights') : config.weights.default;
  state.rollout = q.get('rollout') === '1';
  readAblate(q);
}

function writeState() {
  const q = new URLSearchParams();
  const image = takesImage(state.model);
  const text = image ? '' : linkText ?? state.text;
  if (text) q.set('text', text);
  if (image && state.draw) q.set('draw', state.draw);
  q.set('model', state.model);
  if (state.truncate) q.set('truncate', '1');
  if (state.tab !== DEFAULT_TAB) q.set('tab', state.tab);
  if (state.words) q.set('words', '1');
  if (state.nospecial) q.set('nospecial', '1');
  if (state.fit) q.set('fit', '1');
  if (state.kind !== null && state.layer !== null && state.head !== null) {
    q.set('kind', state.kind);
    q.set('layer', state.layer);
    q.set('head', state.head);
  }
  if (state.step !== null) q.set('step', state.step);
  if (state.gen !== null) q.set('gen', state.gen);
  if (state.weights !== config.weights.default) q.set('weights', state.weights);
  if (state.rollout) q.set('rollout', '1');
  writeAblate(q);
  shownTab()?.module.writeUrl?.(q, page);
  let url = `${location.pathname}?${q}`;
  const tooLong = (text || (image && state.draw)) && url.length > URL_BUDGET;
  if (tooLong) {
    q.delete('text');
    q.delete('draw');
    url = `${location.pathname}?${q}`;
  }
  if (image) drawImageLinkNote(tooLong);
  else drawLinkNote(text, tooLong);
  history.replaceState(null, '', url);
}

// What the link in the address bar keeps of the text, when it is not the whole text.
function drawLinkNote(text, tooLong) {
  let note = '';
  const kb = (n) => `${Math.ceil(n / 1000)} KB`;
  if (tooLong) {
    note = `This text is too long for a link (${kb(new URLSearchParams({ text }).toString().length)} in a URL; a link `
      + `holds at most ${kb(URL_BUDGET)}), so the address bar keeps everything but the text. `
      + (state.truncate ? 'Share the text itself, or a shorter part of it.'
        : 'Tick "cut to fit" to keep the part the model reads, or share the text itself.');
  } else if (linkText === '' && state.text) {
    note = 'The link does not keep this text: it is longer than the model reads. Tick "cut to fit" to keep the part it reads.';
  } else if (linkText && linkText !== state.text) {
    note = `The link keeps the part of the text the model read (${codePoints(linkText).length} of ${codePoints(state.text).length} characters).`;
  }
  el.linkNote.textContent = note;
  el.linkNote.hidden = !note;
}

// What the link keeps of an image model's input: the drawing, never an upload.
function drawImageLinkNote(tooLong = false) {
  const note = uploading() ? 'An uploaded picture cannot be kept in a link: the link keeps the drawing on the pad, if '
    + 'any, and the view. Share the file itself with the link.'
    : tooLong ? `This drawing has too many pixels for a link (a link holds at most ${Math.ceil(URL_BUDGET / 1000)} KB): `
      + 'the address bar keeps everything but the drawing.' : '';
  el.linkNote.textContent = note;
  el.linkNote.hidden = !note;
}

function setStatus(text, kind = 'info') {
  el.status.textContent = text;
  el.status.dataset.kind = kind;
}

// What the chosen model can generate, from its <option>'s data-* attributes (GET /api/models).
function modelGeneration(name = el.model.value) {
  const o = [...el.model.options].find((option) => option.value === name);
  return o && o.dataset.generation ? { kind: o.dataset.generation, max: +o.dataset.maxNewTokens, default: +o.dataset.defaultNewTokens } : null;
}

// Show the generation control that fits the chosen model: "continue by" for a causal LM,
// "output up to" for an encoder-decoder, nothing for an encoder.
function showGenerationControl() {
  const g = modelGeneration();
  el.genLabel.hidden = !g;
  if (!g) return;
  el.genWhat.textContent = g.kind === 'continuation' ? 'continue by' : 'output up to';
  el.gen.min = g.kind === 'continuation' ? 0 : 1;
  el.gen.max = g.max;
  el.gen.value = state.gen ?? g.default;
}

function roles(kind, layer, head) {
  const heads = result?.heads?.[kind];
  const record = heads && heads[layer * result.kinds[kind].H + head];
  return record ? record.roles : [];
}

// ---- analysis -------------------------------------------------------------------------------

// An API error in the page's words (the API's own wording names request fields).
function errorMessage(e) {
  if (!(e instanceof ApiError)) return `Error: ${e.message}`;
  const body = e.body || {};
  if (body.error === config.errors.too_many_tokens && body.count) {
    return `This text has ${body.count} tokens; ${state.model} reads at most ${body.limit}. Shorten it, or tick "cut to fit" to analyze its first ${body.limit}.`;
  }
  if (body.error === config.errors.too_many_characters && body.count) {
    return `This text has ${body.count.toLocaleString('en')} characters; ${state.model} reads at most ${body.limit.toLocaleString('en')}. `
      + `Shorten it, or tick "cut to fit" to analyze its beginning.`;
  }
  return e.message;
}

function clearResult() {
  result = null;
  views = {};
  fetchedHeads.clear();
  el.output.hidden = true;
  drawEffect(null);
  el.transformLabel.textContent = '';
  summary = '';
  if (el.detail.open) el.detail.close();
  drawPrediction(null);
  hook('analysed', page);
}

// Where a cut text stopped: the end of the last input token that came from the text (offsets count code points).
function cutEnd() {
  const ends = result.offsets.filter(Boolean).map((o) => o[1]);
  return ends.length ? Math.max(...ends) : 0;
}

function cutNote() {
  if (!result.truncated) return '';
  const end = cutEnd(), chars = codePoints(result.text);
  return ` · text cut to fit: read up to character ${end} of ${chars.length} (…${sliceCodePoints(chars, Math.max(0, end - 20), end)})`;
}

// Whether there is something to analyze: a text, or for an image model a drawing or an upload.
const hasInput = () => (takesImage() ? !!imageSource() : !!el.text.value.trim());

async function analyze() {
  const started = performance.now();
  state.model = el.model.value;
  const image = takesImage(state.model) ? imageSource() : null;
  state.text = image ? '' : el.text.value;
  state.draw = image ? drawingForUrl() : null;
  state.truncate = el.truncate.checked;
  const generation = modelGeneration();
  state.gen = generation && el.gen.value !== '' && +el.gen.value !== generation.default ? +el.gen.value : null;
  if (takesImage(state.model) ? !image : !state.text.trim()) {
    setStatus(takesImage(state.model) ? (drawnOnPad() ? `Draw a digit on the pad or upload a picture first: ${state.model} takes an image.`
      : `Upload a picture first: ${state.model} takes an image.`)
      : 'Type or paste some text first.', 'error');
    return;
  }
  controller?.abort();
  controller = new AbortController();
  document.body.dataset.state = 'loading';
  setStatus('Analyzing…');
  try {
    const params = { ...state, image: image?.image, generation: generation?.kind, newTokens: state.gen,
      weights: state.weights, rollout: state.rollout, ...ablateFields() };
    result = await fetchAttention(params, controller.signal);
    // an image answer max-pooled for the grid: the overlays over the picture read the full-resolution rows
    if (result.image && Object.values(result.kinds).some((k) => k.pool[0] > 1 || k.pool[1] > 1)) {
      result.full = await fetchFullAttention(params, controller.signal);
    }
  } catch (e) {
    if (e.name === 'AbortError') return;
    clearResult(); // what was on screen belonged to the previous input
    document.body.dataset.state = 'error';
    setStatus(errorMessage(e), 'error');
    const tooLong = [config.errors.too_many_tokens, config.errors.too_many_characters].includes(e.body?.error);
    linkText = tooLong ? '' : null; // a link to a text the model refuses would only be refused again
    writeState();
    if (ablate.heads.length && ABLATE_FIELDS.includes(e.body?.field)) drawAblateError(e.body.detail); // the server names the field
    return;
  }
  fetchedHeads.clear();
  linkText = result.image ? null : result.truncated ? sliceCodePoints(codePoints(result.text), 0, cutEnd()) : null; // the part read
  drawAll();
  const ms = performance.now() - started;
  document.body.dataset.paintMs = ms.toFixed(1); // Analyze to every head painted, for bench/page.py
  document.body.dataset.paintedAt = performance.now().toFixed(1); // and since navigation (a shared link)
  const n = result.tokens.length;
  const first = Object.values(result.kinds)[0];
  const what = result.image ? `${n} positions (the class token and ${result.image.patch_grid.join(' × ')} patches)`
    : `${n} tokens`;
  summary = `${result.model}: ${what} · ${first.L} layers × ${first.H} heads${result.image ? '' : cutNote()} · ${ms.toFixed(0)} ms`;
  setStatus(summary);
  if (!Object.hasOwn(result.kinds, state.kind ?? '')) state.kind = Object.keys(result.kinds)[0];
  writeState();
  if (state.layer !== null && state.head !== null && state.layer < result.kinds[state.kind].L
      && state.head < result.kinds[state.kind].H) {
    openDetail(state.kind, state.layer, state.head);
  }
  await fetchMetrics(controller.signal);
}

// The per-head metrics and roles, after the grid is painted (the server computed them meanwhile):
// then the roles in tooltips and the dialog, and the tab that shows metrics. `ready` once they are in.
async function fetchMetrics(signal) {
  const shown = result;
  let answer;
  try {
    answer = await fetchHeads(resultRequest(), signal);
  } catch (e) {
    if (e.name === 'AbortError' || shown !== result) return;
    document.body.dataset.state = 'ready';
    setStatus(`The head metrics could not be fetched: ${e.message}`, 'error');
    return;
  }
  if (shown !== result) return; // another analysis has started
  result.heads = answer.heads;
  hook('headsArrived', page);
  showDetailRoles();
  drawTab();
  document.body.dataset.state = 'ready';
  preloadPlotly();
}

// Plotly (3.5 MB) draws an opened head; fetched and parsed once the grid and its metrics are shown, while the
// reader looks, so that the first head opened does not wait seconds for it (the grid never waits for it).
function preloadPlotly() {
  const later = window.requestIdleCallback || ((f) => setTimeout(f, 200));
  later(() => loadPlotly().catch(() => {})); // a failure is said when a head is opened
}

function drawAll() {
  views = makeViews(result, { words: state.words, nospecial: state.nospecial });
  hook('analysed', page);
  drawEffect(result);
  const notes = [...new Set(Object.values(views).map((v) => v.note).filter(Boolean))];
  el.transformLabel.textContent = notes.length ? `Transformed view: ${notes.join('; ')}` : '';
  drawWeightsLabel();
  drawOutput();
  drawPrediction(result);
  drawTab();
}

// What the grid's numbers are, from the answer's own description (`weights`): attention weights or value norms.
function drawWeightsLabel() {
  const w = result.weights;
  el.weightsLabel.dataset.weights = w.name;
  el.weightsLabel.textContent = w.rows_sum_to_one ? '' : `Showing ${w.label}: ${w.units}; not probabilities, rows do not `
    + 'sum to 1; each head shaded to its own maximum. Metrics, roles, Similarity and Mechanism use the attention weights; '
    + 'Compare shows what the grid shows.';
}

// ---- generation steps (models with a decoder) -------------------------------------------------

function drawOutput() {
  const rows = result.output_tokens;
  const continuation = result.generated && result.generated.some(Boolean);
  el.output.hidden = !rows && !continuation;
  el.stepControl.hidden = !rows;
  el.outputLabel.textContent = !rows ? 'Text and its continuation (generated tokens marked):'
    : result.output_probs ? `Output (hover a token for its probability; wavy underline: under ${LOW_PROB}):` : 'Output:';
  if (continuation) {
    el.outputText.replaceChildren(...result.tokens.map((t, i) =>
      make('span', { text: t, className: result.generated[i] ? 'generated' : 'prompt' })));
  }
  drawAblatedOutput();
  if (!rows) { state.step = null; el.outputValid.hidden = true; el.outputValid.textContent = ''; return; }
  el.step.max = rows.length;
  if (state.step !== null && state.step > rows.length) state.step = rows.length;
  el.step.value = state.step ?? rows.length; // no step chosen yet: the slider at the end, every row shown alike
  showStep();
}

function showStep() {
  const rows = result.output_tokens;
  const row = state.step === null ? -1 : state.step - 1; // -1: no step chosen, no row highlighted
  const produced = state.step < rows.length ? rows[state.step] : '</s>';
  el.stepLabel.textContent = row < 0 ? `every row (${rows.length}): move the slider to follow one output token`
    : `${state.step}/${rows.length}: row ${row} (${rows[row]}) produced ${produced}`;
  const probs = result.output_probs || [];
  el.outputText.replaceChildren(...rows.slice(1).map((t, i) => {
    const span = make('span', { text: t, className: row < 0 ? 'done' : i === row ? 'current' : i < row ? 'done' : 'todo' });
    if (probs[i] !== undefined) {
      span.title = `p = ${probs[i].toFixed(3)}`;
      span.dataset.prob = probs[i].toFixed(4);
      if (probs[i] < LOW_PROB) span.classList.add('unsure');
    }
    return span;
  }));
  const check = result.output_check; // a model-specific check, as data: {name, ok, label, description}
  el.outputValid.hidden = !check;
  const ablated = result.effect && typeof result.effect.output_text === 'string';
  el.outputValid.textContent = check ? `${check.label}${ablated ? ' (without ablation)' : ''}` : '';
  el.outputValid.title = check ? check.description : '';
  el.outputValid.dataset.valid = String(check ? check.ok : null);
  hook('stepped', page, row);
  if (el.detail.open && views[state.kind]?.layout.rows === 'output_tokens') drawDetail();
}

// With heads ablated, an encoder–decoder writes its output again (the effect's `output_text`): show it beside the
// original, whose tokens the grid and the validity badge describe.
function drawAblatedOutput() {
  const ablated = result.effect && typeof result.effect.output_text === 'string' ? result.effect.output_text : null;
  el.outputAblated.hidden = ablated === null;
  el.outputAblated.textContent = ablated === null ? ''
    : `with ${result.ablate.length === 1 ? 'the head' : 'the heads'} ablated: ${ablated}${ablated === result.output_text ? ' (unchanged)' : ''}`;
  el.outputAblated.dataset.changed = String(ablated !== null && ablated !== result.output_text);
}

// ---- detail view -------------------------------------------------------------------------------

function openDetail(kind, layer, head) {
  Object.assign(state, { kind, layer, head });
  hook('headOpened', page, kind, layer, head);
  writeState();
  if (!el.detail.open) el.detail.showModal();
  return drawDetail();
}

// What the request for the current result was: fetching one head again must ask the same.
function resultRequest() {
  return { text: result.text, image: result.imageSent, model: result.model, truncate: state.truncate, generation: modelGeneration()?.kind,
    newTokens: state.gen, weights: result.weights.name, ablate: result.ablate?.length ? result.ablate : undefined,
    ablation: result.ablation ?? undefined };
}

// One head at full resolution, as {view, layer, head} to read with view.matrix(layer, head): from the
// answer's own data, or fetched alone when the grid was pooled (a long text) or `exact` floats are wanted.
const fetchedHeads = new Map(); // `${exact} kind layer head` -> promise of a one-head kind, for `result`
async function headView(kind, layer, head, exact = false) {
  if (!exact && !isPooled(result.kinds[kind])) return { view: views[kind], layer, head };
  const key = `${exact} ${kind} ${layer} ${head}`;
  if (!fetchedHeads.has(key)) fetchedHeads.set(key, fetchHead(resultRequest(), { kind, layer, head }, exact));
  try {
    const one = await fetchedHeads.get(key);
    return { view: makeView(one, result, { words: state.words, nospecial: state.nospecial }), layer: 0, head: 0 };
  } catch (e) {
    fetchedHeads.delete(key);
    throw e;
  }
}

async function drawDetail() {
  if (!Object.hasOwn(views, state.kind ?? '')) return;
  const { kind, layer, head } = state;
  const shown = result;
  let view, at;
  try {
    ({ view, ...at } = await headView(kind, layer, head));
  } catch (e) {
    if (shown === result) setStatus(`Cannot fetch ${headName(layer, head)}: ${e.message}`, 'error');
    return;
  }
  if (shown !== result || state.kind !== kind || state.layer !== layer || state.head !== head) return; // moved on
  const name = headName(layer, head);
  el.detailTitle.textContent = `${name} · ${state.kind}`;
  showDetailRoles();
  const matrix = view.matrix(at.layer, at.head);
  const { max: zmax, skipped } = colourMax(view, matrix);
  const what = result.weights;
  const over = skipped ? ' in the rows with a choice (the first row sees only its own key: drawn at full colour)' : '';
  el.detailNote.textContent = [view.note && `Transformed view: ${view.note}.`,
    `Rows are queries, columns keys. Colour from 0 to this head's largest ${what.label}${over}, ${zmax.toFixed(3)}${what.rows_sum_to_one ? '' : ` (${what.units}; rows do not sum to 1)`}; shown values are 8-bit (within ${(zmax / 510).toFixed(4)}); CSV export has the exact float32 values.`]
    .filter(Boolean).join(' ');
  const highlight = state.step !== null && view.layout.rows === 'output_tokens' ? state.step - 1 : -1;
  try {
    await drawHeatmap(el.heatmap, { matrix, rows: view.rows, cols: view.cols, title: `${name} ${state.kind}`, zmax, highlightRow: highlight,
      colorbarTitle: what.label });
    el.heatmap.dataset.head = name;
    el.heatmap.dataset.kind = state.kind;
  } catch (e) {
    setStatus(`Cannot draw the heatmap: ${e.message}`, 'error');
  }
}

function showDetailRoles() {
  if (state.layer === null || state.head === null) return;
  const headRoles = roles(state.kind, state.layer, state.head);
  el.detailRoles.replaceChildren(...headRoles.map((r) => make('span', { text: r, className: 'badge' })),
    ...(headRoles.length ? [make('span', { text: ' roles on this one text', className: 'hint' })] : []));
}

function closeDetail() {
  if (el.detail.open) el.detail.close();
  state.layer = state.head = null;
  writeState();
}

function step(dLayer, dHead) {
  const view = Object.hasOwn(views, state.kind ?? '') ? views[state.kind] : null;
  if (!view || state.layer === null) return;
  let layer = state.layer, head = state.head + dHead;
  if (head < 0) { head = view.H - 1; layer -= 1; }
  if (head >= view.H) { head = 0; layer += 1; }
  layer += dLayer;
  if (layer < 0 || layer >= view.L) return;
  openDetail(state.kind, layer, head);
}

function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = make('a', { attrs: { href: url, download: name } });
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function csvCell(text) {
  return /[",\n\r]/.test(text) ? `"${String(text).replace(/"/g, '""')}"` : String(text);
}

// The open head's exact float32 weights (with the view's transforms), 9 significant digits: every
// float32 written so that it reads back to the same number.
async function exportCsv() {
  let view, at;
  try {
    ({ view, ...at } = await headView(state.kind, state.layer, state.head, true));
  } catch (e) {
    return setStatus(`Cannot fetch the exact weights: ${e.message}`, 'error');
  }
  const m = view.matrix(at.layer, at.head);
  const lines = [['query \\ key', ...view.cols].map(csvCell).join(',')];
  view.rows.forEach((r, i) => lines.push([csvCell(r), ...Array.from(m.subarray(i * view.C, (i + 1) * view.C),
    (v) => String(Number(v.toPrecision(9))))].join(',')));
  download(`${headName(state.layer, state.head)}-${state.kind}.csv`, lines.join('\n') + '\n', 'text/csv');
}

async function exportImage(format) {
  const Plotly = await loadPlotly();
  Plotly.downloadImage(el.heatmap, { format, filename: `${headName(state.layer, state.head)}-${state.kind}`, width: 900, height: 800 });
}

// ---- tabs ----------------------------------------------------------------------------------------

// Show the tab `name` (one of the config's tabs): false, and nothing changes, for a name that is none.
function showTab(name) {
  if (!config.tabs.some((t) => t.name === name)) return false;
  state.tab = name;
  if (document.body.dataset.state === 'ready') setStatus(summary); // a message of another tab is over
  for (const b of el.tabs.querySelectorAll('[data-tab]')) b.setAttribute('aria-selected', String(b.dataset.tab === name));
  for (const s of document.querySelectorAll('main > .tab')) s.hidden = s.dataset.tab !== name;
  writeState();
  drawTab();
  return true;
}

// A tab that does not apply to the chosen model's input (the config's `not_for_images` for a model that takes an
// image) says why in words instead of its content.
function markTabsForInput() {
  const image = takesImage();
  for (const tab of config.tabs) {
    const section = document.getElementById(`tab-${tab.name}`);
    const note = section?.querySelector('[data-not-here]');
    if (!note) continue;
    const why = image && tab.not_for_images ? `The ${tab.label} tab does not apply to ${el.model.value}: ${tab.not_for_images}.` : '';
    note.textContent = why;
    note.hidden = !why;
    for (const child of section.children) if (child !== note && !child.matches('.tab-error')) child.classList.toggle('not-here', !!why);
  }
}

function drawTab() {
  markTabsForInput();
  const shown = shownTab();
  if (takesImage() && shown?.tab.not_for_images) return;
  if (!shown?.module.draw || (shown.module.ready && !shown.module.ready(page))) return;
  shown.module.draw(page);
}

// Every tab's hooks, in the config's order. A tab whose script did not load or run says so in its section, and the
// other tabs work.
function findTabs() {
  for (const tab of config.tabs) {
    const module = registered(tab.script);
    if (module) tabs.push({ tab, module });
    else {
      const note = document.querySelector(`#tab-${CSS.escape(tab.name)} .tab-error`);
      if (note) { note.hidden = false; note.textContent = `The ${tab.label} tab could not load its script (${tab.script}).`; }
    }
  }
}

// ---- wiring ----------------------------------------------------------------------------------------

function wire() {
  el.inputForm.addEventListener('submit', (e) => { e.preventDefault(); state.layer = state.head = state.step = null; analyze(); });
  el.text.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); el.inputForm.requestSubmit(); }
  });
  el.tabs.addEventListener('click', (e) => { const b = e.target.closest('[data-tab]'); if (b) showTab(b.dataset.tab); });
  for (const [box, key] of [[el.optWords, 'words'], [el.optNospecial, 'nospecial']]) {
    box.addEventListener('change', () => {
      state[key] = box.checked;
      writeState();
      if (result) { drawAll(); if (el.detail.open) drawDetail(); }
    });
  }
  el.model.addEventListener('change', () => { state.gen = null; ablate.heads = []; showGenerationControl(); showInput(); });
  setupImageInput(() => { if (takesImage()) drawImageLinkNote(); });
  el.optWeights.addEventListener('change', () => { state.weights = el.optWeights.value; reanalyze(); });
  el.optRollout.addEventListener('change', () => { state.rollout = el.optRollout.checked; reanalyze(); });
  setupAblate(() => { state.layer = state.head = null; writeState(); if (hasInput()) analyze(); });
  el.example.addEventListener('click', () => {
    el.text.value = el.model.selectedOptions[0].dataset.example;
    el.inputForm.requestSubmit();
  });
  el.step.addEventListener('input', () => { state.step = +el.step.value; writeState(); showStep(); });
  el.detailClose.addEventListener('click', closeDetail);
  el.detail.addEventListener('close', () => { if (state.layer !== null) closeDetail(); });
  el.prevHead.addEventListener('click', () => step(0, -1));
  el.nextHead.addEventListener('click', () => step(0, 1));
  el.prevLayer.addEventListener('click', () => step(-1, 0));
  el.nextLayer.addEventListener('click', () => step(1, 0));
  el.detail.addEventListener('keydown', (e) => {
    const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] };
    if (moves[e.key]) { e.preventDefault(); step(...moves[e.key]); }
  });
  el.exportPng.addEventListener('click', () => exportImage('png'));
  el.exportSvg.addEventListener('click', () => exportImage('svg'));
  el.exportCsv.addEventListener('click', exportCsv);
  for (const { tab, module } of tabs) module.setup?.(page, tab);
}

// A new answer for the same text (weights or rollout changed), keeping the open head.
function reanalyze() {
  writeState();
  if (result || hasInput()) analyze();
}

// The input the chosen model takes (a text box, or the digit pad sized to its image); the example button only for a
// model that has an example.
async function showInput() {
  el.example.hidden = !el.model.selectedOptions[0]?.dataset.example;
  markTabsForInput();
  try {
    await showInputFor(el.model.value);
    return true;
  } catch (e) {
    setStatus(e.message, 'error');
    return false;
  }
}

async function start() {
  findTabs();
  readState();
  el.text.value = state.text;
  el.model.value = state.model;
  el.truncate.checked = state.truncate;
  showGenerationControl();
  el.optWords.checked = state.words;
  el.optNospecial.checked = state.nospecial;
  el.optFit.checked = state.fit;
  el.optWeights.value = state.weights;
  el.optRollout.checked = state.rollout;
  wire();
  showTab(state.tab);
  const shown = await showInput();
  let drawn = false;
  if (shown && takesImage() && state.draw) {
    drawn = loadDrawing(state.draw);
    if (!drawn) setStatus(drawnOnPad() ? `The link's drawing (draw=) is not ${state.model}'s image size: draw again.`
      : `The link has a drawing (draw=), but ${state.model} is not drawn on a pad: upload a picture.`, 'error');
  }
  document.body.dataset.state = 'idle';
  document.body.dataset.readyMs = performance.now().toFixed(1); // page interactive, for bench/page.py
  if (takesImage() ? drawn : state.text.trim()) analyze();
}

start();
