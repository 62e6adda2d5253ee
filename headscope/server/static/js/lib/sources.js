// Where the per-head numbers of the Head map, Table and Similarity tabs come from: this sentence's answer, or a
// corpus average (the Corpus tab sets one per model); and what they are computed on, said from the page config's
// `metrics` (each metric's basis), never from a list of names.
import { config } from './config.js';
import { el, make } from './dom.js';

const corpora = new Map(); // model name -> its last corpus result {model, sentences, errors, heads}

// A kind picker: the kinds given, keeping the one chosen when it is still there.
export function fillKindSelect(select, kinds) {
  const current = select.value;
  select.replaceChildren(...kinds.map((k) => make('option', { text: k, attrs: { value: k } })));
  if (kinds.includes(current)) select.value = current;
}

// The corpus result of the model in the picker (a corpus of another model has other heads).
export const currentCorpus = () => corpora.get(el.model.value) || null;
export const hasCorpus = () => currentCorpus() !== null;

// Keep a corpus result for its model, and make it the source every "Numbers from" picker shows.
export function keepCorpus(model, corpus) {
  corpora.set(model, corpus);
  fillSources(null);
  for (const select of document.querySelectorAll('.source-select')) select.value = 'corpus';
}

// Every "Numbers from" picker (class source-select): this sentence and/or the corpus average.
export function fillSources(result) {
  const corpus = currentCorpus();
  for (const select of document.querySelectorAll('.source-select')) {
    const current = select.value || 'sentence';
    const options = [];
    if (result) options.push(make('option', { text: `this sentence (${result.tokens.length} tokens)`, attrs: { value: 'sentence' } }));
    if (corpus) options.push(make('option', { text: `corpus average (${corpus.sentences} sentences)`, attrs: { value: 'corpus' } }));
    select.replaceChildren(...options);
    if ([...select.options].some((o) => o.value === current)) select.value = current;
  }
}

// Head records of the chosen source and kind: [{layer, head, name, metrics, roles}].
export function records(result, source, kind) {
  const corpus = currentCorpus();
  const data = source === 'corpus' && corpus ? corpus : result;
  return data?.heads?.[kind] || [];
}

export function metricNames(list) {
  return list.length ? Object.keys(list[0].metrics) : [];
}

// A result of the model in the picker that has this kind (an own property: never 'constructor').
export const hasKind = (result, kind) => !!result && result.model === el.model.value && Object.hasOwn(result.kinds, kind);

export const fmt = (v) => (v === null || v === undefined ? 'n/a' : v.toFixed(3));
const percent = (share) => `${Math.round(share * 100)}%`;

// The metrics of one basis (raw | renormalised), from the page config: "sink, first_token and confidence".
function metricsOn(basis) {
  const names = Object.entries(config.metrics).filter(([, about]) => about.basis === basis).map(([name]) => name);
  return names.length > 1 ? `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}` : names.join('');
}

// What the Table's and Head map's numbers are, said in the tab: whose they are (this one text, or the
// means of a corpus) and what they are computed on. They come from the server, on tokens, each metric on its
// basis (the page config's `metrics`: the raw weights, or special tokens left out and rows renormalised;
// docs/metrics.md). Merging words would change them, so when the view's options are on, the note says plainly
// that these numbers do not follow them.
export function showBasis(node, source, options, corpus) {
  const whose = source === 'corpus' && corpus
    ? `Means over ${corpus.sentences} sentences (hover a value for its spread); roles of those means, each with the share of sentences on which it fired.`
    : 'Numbers and roles of this one text: an anecdote. Run a corpus (Corpus tab) before saying what a head does.';
  const what = `Computed on tokens: ${metricsOn('raw')} on the raw attention, ${metricsOn('renormalised')} with special `
    + 'tokens left out and rows renormalised.';
  const on = [options?.words && 'words', options?.nospecial && 'hide special tokens'].filter(Boolean);
  const raw = on.length ? ` These numbers do not follow the view's options (${on.join(', ')}): they stay computed on the tokens as just said.` : '';
  node.textContent = `${whose} ${what}${raw}`;
  node.dataset.raw = on.length ? '1' : '';
  node.dataset.source = source === 'corpus' && corpus ? 'corpus' : 'sentence';
}

// A head's role badges: on a corpus, each with the share of sentences on which it fired.
export function roleBadges(r) {
  return r.roles.map((role) => make('span', { text: r.role_share ? `${role} ${percent(r.role_share[role])}` : role,
    className: 'badge', attrs: { 'data-role': role } }));
}

// A value's tooltip: on a corpus, mean ± std over the n sentences where it is defined.
export const spread = (r, m) => (r.std ? `${fmt(r.metrics[m])} ± ${fmt(r.std[m])} over ${r.n[m]} sentences` : fmt(r.metrics[m]));
