// The Corpus tab: per-head metrics averaged over many sentences (POST /api/corpus, streamed with progress), kept
// per model; the Head map, Table and Similarity tabs can show them instead of one sentence's.
import { el as shell, elements } from '../lib/dom.js';
import { fetchCorpus } from '../lib/api.js';
import { keepCorpus } from '../lib/sources.js';
import { register } from '../lib/registry.js';

const el = { model: shell.model, ...elements(['corpus-text', 'corpus-file', 'corpus-run', 'corpus-cancel', 'corpus-progress', 'corpus-status']) };

// A corpus result, once it arrives, becomes the source of the Head map, Table and Similarity (lib/sources.js).
function setup(page) {
  let controller = null;
  el.corpusFile.addEventListener('change', async () => {
    const file = el.corpusFile.files[0];
    if (file) el.corpusText.value = await file.text();
  });
  el.corpusCancel.addEventListener('click', () => controller?.abort());
  el.corpusRun.addEventListener('click', async () => {
    // Non-blank lines, each with its line number in what was pasted, for error messages.
    const numbered = el.corpusText.value.split(/\r?\n/).map((text, i) => ({ text: text.trim(), line: i + 1 }))
      .filter((l) => l.text);
    const lines = numbered.map((l) => l.text);
    if (!lines.length) return (el.corpusStatus.textContent = 'Paste sentences, one per line, or choose a file.');
    if (lines.length > page.config.limits.corpus_max_texts) {
      el.corpusStatus.textContent = `${lines.length} lines: the limit is ${page.config.limits.corpus_max_texts} per run.`;
      return;
    }
    controller = new AbortController();
    el.corpusRun.disabled = true;
    el.corpusCancel.disabled = false;
    el.corpusProgress.max = lines.length;
    el.corpusProgress.value = 0;
    el.corpusStatus.textContent = `0 / ${lines.length}`;
    document.body.dataset.corpus = 'running';
    try {
      const model = el.model.value;
      const corpus = await fetchCorpus({ texts: lines, model }, (done, total) => {
        el.corpusProgress.max = total;
        el.corpusProgress.value = done;
        el.corpusStatus.textContent = `${done} / ${total}`;
      }, controller.signal);
      keepCorpus(model, corpus);
      const skipped = corpus.errors.length ? `; ${corpus.errors.length} skipped (first: line ${numbered[corpus.errors[0].index].line}, ${corpus.errors[0].error})` : '';
      el.corpusProgress.value = el.corpusProgress.max;
      el.corpusStatus.textContent = `${corpus.sentences} sentences averaged with ${model}${skipped}. See Head map and Table.`;
      document.body.dataset.corpus = 'done';
      page.redraw();
    } catch (e) {
      el.corpusStatus.textContent = e.name === 'AbortError' ? 'Cancelled.' : e.message;
      document.body.dataset.corpus = e.name === 'AbortError' ? 'cancelled' : 'error';
    } finally {
      el.corpusRun.disabled = false;
      el.corpusCancel.disabled = true;
    }
  });
}

register(import.meta.url, { setup });
