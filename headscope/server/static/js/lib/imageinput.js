// The input of an image model: when the chosen model's GET /api/models entry says it takes "image", the text box
// gives way to the digit pad (lib/digitpad.js) at the model's own image size and an upload (PNG or JPEG). What the
// request's `image` is: the drawing as a PNG, or the uploaded file's bytes as they are (the server fits any size).
// The drawing is kept in the URL (`draw`); an upload cannot be, and the note under it says so. Also here: the
// prediction and every class's probability of an image answer (its `image`). Nothing here knows a model by its name.
//   #image-input[hidden]                      shown for an image model, #text-input hidden then
//   #prediction-text[data-class]              the predicted class; #probabilities .prob[data-class][data-prob] each
import { config } from './config.js';
import { el, elements, make } from './dom.js';
import { DigitPad } from './digitpad.js';

const own = elements(['text-input', 'image-input', 'pad', 'pad-undo', 'pad-clear', 'upload', 'upload-preview', 'pad-note',
  'pad-what', 'prediction', 'prediction-text', 'prediction-ablated', 'probabilities']);
const MAX_CLASSES_SHOWN = 10; // the most probable classes listed (a real ViT has a thousand)

let pad = null;
let padShown = true; // whether the chosen image model is drawn on the pad (its /api/models image.pad)
let upload = null; // {name, base64, url} of the picture uploaded, while it is what Analyze sends
let models = null; // promise of GET /api/models' `models`, fetched when an image model is first chosen

export const takesImage = (name = el.model.value) =>
  [...el.model.options].find((o) => o.value === name)?.dataset.takes === 'image';

function modelInfo(name) {
  models ??= fetch('/api/models').then((r) => (r.ok ? r.json() : Promise.reject(new Error(`GET /api/models: ${r.status}`))))
    .then((answer) => answer.models);
  return models.then((list) => list.find((m) => m.name === name));
}

// `onChange()` after the drawing or the upload changed (the URL keeps the drawing).
export function setupImageInput(onChange) {
  pad = new DigitPad(own.pad, () => { dropUpload(); onChange(); });
  own.padUndo.addEventListener('click', () => { dropUpload(); pad.undo(); });
  own.padClear.addEventListener('click', () => { dropUpload(); pad.clear(); });
  own.upload.addEventListener('change', () => readUpload(onChange));
  // Ctrl+Enter on the pad analyzes, as it does in the text box
  own.pad.tabIndex = 0;
  own.pad.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); el.inputForm.requestSubmit(); }
  });
}

// Show the input the chosen model takes: for an image model whose /api/models `image.pad` is true (it reads
// drawings a person makes at its own size), the pad sized to its image and an upload; for any other image model
// (a ViT checkpoint) the upload only. Resolves to the model's image size [height, width] (null for a text model);
// throws when the server does not say it.
export async function showInputFor(name) {
  const image = takesImage(name);
  own.textInput.hidden = image;
  own.imageInput.hidden = !image;
  el.truncate.closest('label').hidden = image; // "cut to fit" cuts texts; a picture is fitted by the server
  if (!image) return null;
  const info = await modelInfo(name);
  const size = info?.image?.size;
  if (!Array.isArray(size) || size.length !== 2 || typeof info.image.pad !== 'boolean') {
    throw new Error(`GET /api/models does not say the image size of ${name} and whether it is drawn on a pad`);
  }
  padShown = info.image.pad;
  for (const node of [own.pad, own.padUndo, own.padClear]) node.hidden = !padShown;
  if (padShown) {
    pad.resize(size);
    own.padWhat.textContent = `Draw on the ${size[0]} × ${size[1]} pixels ${name} reads, bright on dark, then press Analyze.`;
  } else {
    own.padWhat.textContent = `Upload a picture: ${name} reads ${size[0]} × ${size[1]} pixels, and its own image processor fits any picture to them.`;
  }
  return size;
}

function dropUpload() {
  if (!upload) return;
  upload = null;
  own.upload.value = '';
  own.uploadPreview.hidden = true;
  own.uploadPreview.removeAttribute('src');
  own.pad.classList.remove('inactive');
  own.padNote.textContent = '';
}

async function readUpload(onChange) {
  const file = own.upload.files[0];
  if (!file) return;
  const limit = config.limits.max_image_bytes;
  if (limit && file.size > limit) {
    own.padNote.textContent = `${file.name} is ${file.size.toLocaleString('en')} bytes; the server reads pictures of at most ${limit.toLocaleString('en')} bytes.`;
    own.upload.value = '';
    return;
  }
  const url = await new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
  upload = { name: file.name, url, base64: url.slice(url.indexOf(',') + 1) };
  own.uploadPreview.src = url;
  own.uploadPreview.hidden = false;
  own.pad.classList.add('inactive');
  own.padNote.textContent = padShown ? `Analyze sends ${file.name} (shown beside the pad); draw, undo or clear to use the pad again.`
    : `Analyze sends ${file.name} (shown here).`;
  onChange();
}

// What Analyze sends: {image: base64, from: 'upload' | 'draw'}, or null when there is nothing to send.
export function imageSource() {
  if (upload) return { image: upload.base64, from: 'upload', name: upload.name };
  if (!padShown || !pad || pad.empty) return null;
  return { image: pad.png(), from: 'draw' };
}

// The URL's `draw`: the drawing (none for an empty pad or an upload).
export function drawingForUrl() {
  return upload || !padShown || !pad || pad.empty ? null : pad.encode();
}

export const uploading = () => !!upload;
export const drawnOnPad = () => padShown;

// Redraw the pad from a link's `draw`: true when the model is drawn on a pad and the drawing fits its size.
export function loadDrawing(text) {
  return padShown && pad.decode(text);
}

// The prediction and each class's probability (the answer's `image`); with heads ablated, the ablated run's
// prediction beside it (the effect's `prediction` and `probabilities`).
export function drawPrediction(result) {
  const image = result?.image;
  own.prediction.hidden = !image;
  if (!image) { own.probabilities.replaceChildren(); return; }
  if (!image.predicts) { // a feature model: no classifier head, nothing to predict
    own.predictionText.textContent = 'none: this is a feature model (no classifier head), it predicts no class';
    own.predictionText.dataset.class = '';
    own.predictionAblated.hidden = true;
    own.probabilities.replaceChildren();
    return;
  }
  const probs = image.probabilities;
  const best = image.classes.indexOf(image.prediction);
  own.predictionText.textContent = `${image.prediction} (p = ${probs[best].toFixed(3)})`;
  own.predictionText.dataset.class = image.prediction;
  const after = result.effect?.prediction;
  own.predictionAblated.hidden = after === undefined;
  own.predictionAblated.textContent = after === undefined ? ''
    : `with the heads ablated: ${after} (p = ${result.effect.probabilities[image.classes.indexOf(after)].toFixed(3)})`;
  own.predictionAblated.dataset.changed = String(after !== undefined && after !== image.prediction);
  const order = probs.map((p, i) => i).sort((a, b) => probs[b] - probs[a]).slice(0, MAX_CLASSES_SHOWN);
  const cells = [];
  for (const i of order) {
    const bar = make('span', { className: 'bar' });
    bar.style.width = `${(100 * probs[i]).toFixed(1)}%`;
    const track = make('span', { className: 'track' });
    track.append(bar);
    const name = make('span', { text: image.classes[i], className: `prob${i === best ? ' predicted' : ''}`,
      attrs: { 'data-class': image.classes[i], 'data-prob': String(probs[i]) } });
    cells.push(name, track, make('span', { text: probs[i].toFixed(3) }));
  }
  own.probabilities.replaceChildren(...cells);
  own.probabilities.title = probs.length > MAX_CLASSES_SHOWN ? `the ${MAX_CLASSES_SHOWN} most probable of ${probs.length} classes` : 'every class';
}
