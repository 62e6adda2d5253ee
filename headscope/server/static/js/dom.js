// Every element the scripts use, by id, in one place. The browser tests use the same ids and
// the data-* attributes documented here:
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
const ids = [
  'input-form', 'text', 'example', 'tab-corpus', 'compare-kind', 'hover-name', 'model', 'truncate', 'analyze', 'status', 'tabs', 'grids',
  'opt-words', 'opt-nospecial', 'opt-fit', 'transform-label', 'output', 'output-label', 'output-text', 'output-valid', 'step', 'step-label', 'step-control',
  'gen-label', 'gen-what', 'gen', 'opt-weights', 'opt-rollout', 'weights-label', 'rollout',
  'map-metric', 'map-kind', 'map-source', 'head-map', 'table-kind', 'table-source', 'head-table',
  'map-basis', 'table-basis', 'similarity-basis', 'similarity-source', 'similarity-kind', 'similarity-plot', 'compare-a', 'compare-b', 'compare-heads', 'compare-text',
  'compare-texts', 'compare-plots', 'corpus-text', 'corpus-file', 'corpus-run', 'corpus-cancel',
  'corpus-progress', 'corpus-status', 'detail', 'detail-title', 'detail-roles', 'detail-note',
  'heatmap', 'prev-layer', 'prev-head', 'next-head', 'next-layer', 'detail-close',
  'export-png', 'export-svg', 'export-csv', 'detail-mechanism',
  'mech-kind', 'mech-layer', 'mech-head', 'mech-query', 'mech-status', 'mech-steps',
  'ohm-recipe', 'ohm-table', 'ohm-exact', 'ohm-loss', 'ohm-spread', 'ohm-grids',
  'pg-presets', 'pg-form', 'pg-run', 'pg-status', 'pg-code', 'pg-shapes', 'pg-heads',
  'opt-ablate', 'ablation-mode', 'effect', 'effect-heads', 'effect-measures', 'ablate-clear',
  'tab-importance', 'imp-ablation', 'imp-texts', 'imp-run', 'imp-cancel', 'imp-progress', 'imp-status', 'imp-measure',
  'imp-maps', 'imp-curve',
  'probe-example', 'probe-use-example', 'probe-file', 'probe-pairs', 'probe-run', 'probe-status',
  'probe-baseline', 'probe-plots', 'probe-table', 'probe-skipped',
];

const camel = (id) => id.replace(/-(\w)/g, (_, c) => c.toUpperCase());

export const el = Object.fromEntries(ids.map((id) => [camel(id), document.getElementById(id)]));

// Make an element with text content only: user text never goes through innerHTML.
export function make(tag, { text, className, attrs } = {}) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}
