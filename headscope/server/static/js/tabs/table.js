// The Table tab: every head's metrics and roles, sortable by any column, from this sentence or a corpus average
// (lib/sources.js); a click on a row opens the head. Its glossary (templates/tabs/table.html) is rendered by the
// server from the metrics' definitions, each with its basis.
import { elements, make } from '../lib/dom.js';
import { currentCorpus, fillKindSelect, fillSources, fmt, hasCorpus, hasKind, metricNames, records, roleBadges, showBasis, spread } from '../lib/sources.js';
import { register } from '../lib/registry.js';

const el = elements(['table-kind', 'table-source', 'head-table', 'table-basis']);
const sort = { key: 'name', descending: false };

function setup(page) {
  for (const select of [el.tableKind, el.tableSource]) select.addEventListener('change', page.redraw);
}

const ready = (page) => !!page.result || hasCorpus();

function analysed(page) {
  if (page.result) fillKindSelect(el.tableKind, Object.keys(page.result.kinds));
}

function draw({ result, openDetail, options }) {
  fillSources(result);
  if (!el.tableKind.options.length) fillKindSelect(el.tableKind, Object.keys(currentCorpus().heads));
  const kind = el.tableKind.value || el.tableKind.options[0]?.value;
  const list = [...records(result, el.tableSource.value, kind)];
  const names = metricNames(list);
  const value = (r) => (sort.key === 'name' ? r.layer * 1000 + r.head : sort.key === 'roles' ? r.roles.join(' ') : r.metrics[sort.key]);
  list.sort((a, b) => {
    const va = value(a), vb = value(b);
    if (va === null) return 1;
    if (vb === null) return -1;
    const c = va < vb ? -1 : va > vb ? 1 : 0;
    return sort.descending ? -c : c;
  });
  const thead = el.headTable.tHead, tbody = el.headTable.tBodies[0];
  const header = make('tr');
  for (const key of ['name', 'roles', ...names]) {
    const arrow = sort.key === key ? (sort.descending ? ' ▼' : ' ▲') : '';
    const th = make('th', { attrs: { 'data-key': key, 'aria-sort': sort.key === key ? (sort.descending ? 'descending' : 'ascending') : 'none' } });
    const label = key === 'name' ? 'head' : key === 'roles' ? (list[0]?.role_share ? 'roles (corpus means)' : 'roles (this text)') : key;
    const button = make('button', { text: label + arrow, attrs: { type: 'button' } });
    button.addEventListener('click', () => {
      sort.descending = sort.key === key ? !sort.descending : key !== 'name';
      sort.key = key;
      draw({ result, openDetail, options });
    });
    th.append(button);
    header.append(th);
  }
  thead.replaceChildren(header);
  tbody.replaceChildren(...list.map((r) => {
    const tr = make('tr', { attrs: { 'data-layer': r.layer, 'data-head': r.head } });
    tr.append(make('td', { text: r.name }));
    const roles = make('td');
    roles.append(...roleBadges(r));
    tr.append(roles);
    for (const m of names) {
      tr.append(make('td', { text: fmt(r.metrics[m]), className: 'num', attrs: { 'data-key': m, title: spread(r, m) } }));
    }
    tr.addEventListener('click', () => hasKind(result, kind) && openDetail(kind, r.layer, r.head));
    return tr;
  }));
  showBasis(el.tableBasis, el.tableSource.value, options, currentCorpus());
}

register(import.meta.url, { setup, ready, analysed, draw });
