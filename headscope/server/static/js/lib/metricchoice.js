// The metric choice ablation and importance share (headscope/models/metric_choice.py): which models take one, which
// inputs each metric reads, and a request's fields from those inputs. `boxes`: {controls, metric, spanStart,
// spanEnd, answer, wrong}, the elements of one form (the ablate controls, the Importance tab's).
import { config } from './config.js';
import { el } from './dom.js';

// Whether the chosen model takes a metric: its <option>'s data-generation (from GET /api/models) is one that
// config.metric_choice.generations lists.
export function metricApplies() {
  const o = [...el.model.options].find((option) => option.value === el.model.value);
  return Boolean(o && config.metric_choice.generations.includes(o.dataset.generation));
}

// Show the inputs for a model that takes a metric, and of them the ones the chosen metric reads: the span for loss,
// the answer for logit_diff and prob, the wrong answer for logit_diff.
export function showMetricInputs(boxes) {
  boxes.controls.hidden = !metricApplies();
  const name = boxes.metric.value;
  boxes.spanStart.parentElement.hidden = boxes.spanEnd.parentElement.hidden = name !== 'loss';
  boxes.answer.parentElement.hidden = !(name === 'logit_diff' || name === 'prob');
  boxes.wrong.parentElement.hidden = name !== 'logit_diff';
}

// The request's metric fields ({metric, span, answer, wrong} as the metric reads them; {} when the model takes none
// or none is chosen), or a message saying what is still missing.
export function metricFields(boxes) {
  const name = boxes.metric.value;
  if (!metricApplies() || !name) return {};
  const fields = { metric: name };
  const [start, end] = [boxes.spanStart.value, boxes.spanEnd.value];
  if (name === 'loss' && (start !== '' || end !== '')) {
    if (start === '' || end === '') return 'Give both ends of the span, or neither.';
    fields.span = [+start, +end];
  }
  if (name !== 'loss') {
    if (!boxes.answer.value) return `${name} needs the answer: one token of the model, as text.`;
    fields.answer = boxes.answer.value;
  }
  if (name === 'logit_diff') {
    if (!boxes.wrong.value) return 'logit_diff needs the wrong answer too: one token of the model, as text.';
    fields.wrong = boxes.wrong.value;
  }
  return fields;
}
