// Attention rollout (the answer's `rollout`, asked for with rollout: true): one matrix per kind whose rows
// and columns are the same tokens, drawn on a canvas with its tokens, under the grid. What it is and which
// kinds have one come from the answer's `rollout_about`; nothing here knows a kind by its name.
//   section.rollout[data-kind][data-max]   one per kind; canvas.rollout-map inside, data-max its largest value
import { make } from './dom.js';
import { cellAt, drawMatrix } from './canvasmap.js';
import { visible } from './views.js';

// Labels of one axis: every token, or for a pooled answer the pooled view's block labels.
function labels(result, views, kind, which) {
  const kd = result.kinds[kind];
  const pooled = result.rollout_about.pool[kind].some((n) => n > 1);
  if (pooled) return which === 'rows' ? views[kind].rows : views[kind].cols;
  return kd[which].tokens.map(visible);
}

export function drawRollout(container, result, views) {
  container.replaceChildren();
  container.hidden = !result.rollout;
  if (!result.rollout) return;
  const about = result.rollout_about;
  container.append(make('h3', { text: 'Attention rollout' }),
    make('p', { className: 'hint', text: `${about.formula}. Row i: how much of each token has reached token i after the `
      + `last layer${about.rows_sum_to_one ? '; every row sums to 1' : '; max-pooled for a long text: each cell is its block\'s largest value'}. `
      + 'Drawn on the tokens themselves (the word and special-token options do not apply).' }));
  for (const [kind, reason] of Object.entries(about.skipped)) {
    container.append(make('p', { className: 'hint', text: `${kind}: no rollout (${reason}).` }));
  }
  for (const [kind, r] of Object.entries(result.rollout)) {
    let max = 0;
    for (const v of r.values) if (v > max) max = v;
    const section = make('section', { className: 'rollout', attrs: { 'data-kind': kind, 'data-max': String(max) } });
    const missing = about.not_counted[kind];
    section.append(make('h4', { text: `${kind}${missing ? ` (what enters through ${missing.join(', ')} is not counted)` : ''}` }));
    const canvas = make('canvas', { className: 'rollout-map', attrs: { 'data-kind': kind, 'data-max': String(max) } });
    const rows = labels(result, views, kind, 'rows'), cols = labels(result, views, kind, 'cols');
    const geometry = drawMatrix(canvas, { matrix: r.values, rows, cols, zmax: max });
    const readout = make('p', { className: 'hover-name', text: `colour from 0 to ${max.toFixed(3)}` });
    canvas.addEventListener('mousemove', (e) => {
      const box = canvas.getBoundingClientRect();
      const cell = cellAt(geometry, e.clientX - box.left, e.clientY - box.top);
      readout.textContent = cell ? `${rows[cell.i]} ← ${cols[cell.j]}: ${r.values[cell.i * r.Tk + cell.j].toFixed(4)}`
        : `colour from 0 to ${max.toFixed(3)}`;
    });
    section.append(canvas, readout);
    container.append(section);
  }
}
