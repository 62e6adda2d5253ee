// Finding elements by id, and making them. The browser tests use the page's ids and the data-* attributes
// documented here:
//   canvas.head[data-kind][data-layer][data-head]   one thumbnail per head in the grid
//   button.map-cell[data-layer][data-head]          one cell per head in the head map
//   tr[data-layer][data-head]                        one row per head in the table
//   p.basis[data-raw]                                what a tab's numbers are computed on; data-raw="1" when the
//                                                    view's options are on but the numbers do not follow them
//   body[data-state]                                 idle | loading | ready | error
//   body[data-paint-ms]                              ms from Analyze to the last head painted
//   body[data-ready-ms]                              ms from navigation start to the page being interactive
//   figure.mech-step[data-step]                      one step of the Mechanism tab (x, q, k, qk, scores, ...),
//     its .mech-plot (a Plotly div) and .mech-shape (the shape written out)
//   #mech-steps[data-state]                          loading | ready | error, [data-explained] kind/layer/head/query drawn
//   div.pg-head[data-head]                           one weights heatmap per head in the Playground (data-head="mean" averaged)
//   #pg-shapes[data-state]                           loading | ready | error
//   section.rollout[data-kind] > canvas.rollout-map[data-max]   the attention rollout of one kind (rollout.js)
//   #weights-label[data-weights]                     what the grid shows: attention | value_norm, with its units
//   canvas.head[data-ablated]                        a head knocked out (ablate.js)
//   #effect [data-measure][data-value]               one effect measure (single, or a table cell), its exact value
//   body[data-importance]                            running | done | cancelled | error (the Importance tab's run)
//   #imp-maps .imp-map[data-kind]                    one Plotly importance heatmap (layer x head) per kind;
//     #imp-maps[data-model] the model drawn; #imp-curve the pruning curve (Plotly)
//   main > section.tab[data-tab]                     one section per tab of the registry (headscope/server/tabs.py);
//     .tab-error inside says when the tab's script could not load
//   p[data-notice]                                   what the server says about the URL (an unknown ?tab= or ?model=)
//   #glossary .metric-basis[data-basis]              each metric's basis: raw | renormalised
// The page's own elements (the form, the view options, the output, the effect panel, the detail dialog); each
// tab finds its own with `elements` (static/js/tabs/*.js).
const ids = [
  'input-form', 'text', 'link-note', 'example', 'model', 'truncate', 'analyze', 'status', 'tabs',
  'opt-words', 'opt-nospecial', 'opt-fit', 'transform-label', 'output', 'output-label', 'output-text', 'output-valid', 'output-ablated', 'step', 'step-label', 'step-control',
  'gen-label', 'gen-what', 'gen', 'opt-weights', 'opt-rollout', 'weights-label',
  'detail', 'detail-title', 'detail-roles', 'detail-note',
  'heatmap', 'prev-layer', 'prev-head', 'next-head', 'next-layer', 'detail-close',
  'export-png', 'export-svg', 'export-csv', 'detail-mechanism',
  'opt-ablate', 'ablation-mode', 'effect', 'effect-heads', 'effect-measures', 'ablate-clear',
  'ablate-metric-controls', 'ablate-metric', 'ablate-span-start', 'ablate-span-end', 'ablate-answer', 'ablate-wrong',
];

const camel = (id) => id.replace(/-(\w)/g, (_, c) => c.toUpperCase());

// Elements by id, as {camelCaseId: element}: elements(['map-kind']).mapKind.
export const elements = (list) => Object.fromEntries(list.map((id) => [camel(id), document.getElementById(id)]));

export const el = elements(ids);

// Make an element with text content only: user text never goes through innerHTML.
export function make(tag, { text, className, attrs } = {}) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}
