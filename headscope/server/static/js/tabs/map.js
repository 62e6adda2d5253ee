// The Head map tab: one metric of every head as a layer x head grid of coloured cells, from this sentence or a
// corpus average (lib/sources.js); a click opens the head.
import { elements, make } from '../lib/dom.js';
import { sequentialColor } from '../lib/colors.js';
import { currentCorpus, fillKindSelect, fillSources, fmt, hasCorpus, hasKind, metricNames, records, showBasis, spread } from '../lib/sources.js';
import { register } from '../lib/registry.js';

const el = elements(['map-metric', 'map-kind', 'map-source', 'head-map', 'map-basis']);

// The URL keeps the metric the map is coloured by: &metric=previous_token.
let metricFromUrl = null;

function setup(page) {
  for (const select of [el.mapMetric, el.mapKind, el.mapSource]) {
    select.addEventListener('change', () => { page.writeState(); page.redraw(); });
  }
}

function readUrl(q) {
  metricFromUrl = q.get('metric');
  return false;
}

function writeUrl(q) {
  if (el.mapMetric.value) q.set('metric', el.mapMetric.value);
}

const ready = (page) => !!page.result || hasCorpus();

function analysed(page) {
  if (page.result) fillKindSelect(el.mapKind, Object.keys(page.result.kinds));
}

function draw({ result, openDetail, options }) {
  fillSources(result);
  if (!el.mapKind.options.length) fillKindSelect(el.mapKind, Object.keys(currentCorpus().heads));
  const kind = el.mapKind.value || el.mapKind.options[0]?.value;
  const list = records(result, el.mapSource.value, kind);
  const names = metricNames(list);
  if (el.mapMetric.options.length !== names.length) {
    el.mapMetric.replaceChildren(...names.map((m) => make('option', { text: m, attrs: { value: m } })));
    el.mapMetric.value = names.includes(metricFromUrl) ? metricFromUrl
      : names.includes('previous_token') ? 'previous_token' : names[0];
    metricFromUrl = null;
  }
  const metric = el.mapMetric.value;
  const values = list.map((r) => r.metrics[metric]).filter((v) => v !== null);
  const lo = Math.min(...values), hi = Math.max(...values);
  const H = Math.max(...list.map((r) => r.head)) + 1;
  const grid = make('div', { className: 'map-grid' });
  grid.style.gridTemplateColumns = `auto repeat(${H}, 1fr)`;
  grid.append(make('span'));
  for (let h = 0; h < H; h++) grid.append(make('span', { text: `H${h}`, className: 'axis' }));
  for (const r of list) {
    if (r.head === 0) grid.append(make('span', { text: `L${r.layer}`, className: 'axis' }));
    const v = r.metrics[metric];
    const cell = make('button', {
      text: fmt(v), className: 'map-cell',
      attrs: { type: 'button', 'data-layer': r.layer, 'data-head': r.head, 'data-value': v ?? '',
        title: `${r.name} ${metric} = ${spread(r, metric)}${r.roles.length ? ` · ${r.roles.join(', ')}` : ''}` },
    });
    if (v === null) cell.classList.add('undefined');
    else {
      const t = hi > lo ? (v - lo) / (hi - lo) : 0.5;
      cell.style.background = sequentialColor(t);
      cell.style.color = t > 0.55 ? '#fff' : '#000';
    }
    cell.addEventListener('click', () => hasKind(result, kind) && openDetail(kind, r.layer, r.head));
    grid.append(cell);
  }
  const legend = make('p', { className: 'hint', text: values.length
    ? `${metric}: lightest ${fmt(lo)}, darkest ${fmt(hi)}.` : `${metric} is undefined for every head here.` });
  el.headMap.replaceChildren(legend, grid);
  showBasis(el.mapBasis, el.mapSource.value, options, currentCorpus());
}

register(import.meta.url, { setup, readUrl, writeUrl, ready, analysed, draw });
