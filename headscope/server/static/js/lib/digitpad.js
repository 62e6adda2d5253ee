// The digit pad: a drawing canvas at the image model's own resolution (its `image.size` in GET /api/models, e.g.
// 8 x 8), shown large, drawn on with a mouse, a pen or a finger (pointer events), with undo and clear. Ink is bright
// on black, as the model's training images are. The drawing travels in the URL as `draw`: one hex digit (0-f, 16
// grey levels) per pixel, row by row, so 8 x 8 pixels are 64 characters; `encode` / `decode` read and write it.
//   canvas#pad[data-pixels]   the pad; data-pixels is the drawing's `draw` string (what the URL keeps)
export const LEVELS = 15; // the largest hex digit: a pixel's grey is digit / LEVELS

export class DigitPad {
  // `canvas`: the pad; `onChange()` after every stroke, undo, clear or load.
  constructor(canvas, onChange = () => {}) {
    this.canvas = canvas;
    this.onChange = onChange;
    this.width = 0;
    this.height = 0;
    this.pixels = new Uint8Array(0); // levels 0..LEVELS, row by row
    this.history = []; // the pixels before each stroke, for undo
    this.last = null; // the previous point of the stroke being drawn, in pixels
    canvas.addEventListener('pointerdown', (e) => this.down(e));
    canvas.addEventListener('pointermove', (e) => this.move(e));
    for (const name of ['pointerup', 'pointercancel', 'pointerleave']) canvas.addEventListener(name, () => this.up());
  }

  // Size the pad to an image of [height, width] pixels; a new size starts empty.
  resize([height, width]) {
    if (height === this.height && width === this.width) return;
    this.height = height;
    this.width = width;
    this.pixels = new Uint8Array(height * width);
    this.history = [];
    this.canvas.width = width;
    this.canvas.height = height;
    this.paint();
  }

  get empty() { return this.pixels.every((v) => v === 0); }

  // The point under a pointer event, in pixels of the image (fractional).
  at(e) {
    const box = this.canvas.getBoundingClientRect();
    return [((e.clientX - box.left) / box.width) * this.width, ((e.clientY - box.top) / box.height) * this.height];
  }

  down(e) {
    if (!this.width || e.button > 0) return;
    e.preventDefault();
    this.canvas.setPointerCapture?.(e.pointerId);
    this.history.push(this.pixels.slice());
    this.last = this.at(e);
    this.ink(this.last);
    this.paint();
  }

  move(e) {
    if (!this.last) return;
    e.preventDefault();
    const [x0, y0] = this.last, [x1, y1] = this.at(e);
    const steps = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0) * 4)); // a fast stroke leaves no gaps
    for (let s = 1; s <= steps; s++) this.ink([x0 + ((x1 - x0) * s) / steps, y0 + ((y1 - y0) * s) / steps]);
    this.last = [x1, y1];
    this.paint();
  }

  up() {
    if (!this.last) return;
    this.last = null;
    this.onChange();
  }

  // A soft round brush of radius `max(1, side / 8)` pixels: full ink at the point, fading to none at the rim, so a
  // stroke looks like the blurred pen strokes the model was trained on. Ink only ever adds (max).
  ink([x, y]) {
    const r = Math.max(1, Math.min(this.width, this.height) / 8);
    for (let i = Math.max(0, Math.floor(y - r - 1)); i < Math.min(this.height, Math.ceil(y + r + 1)); i++) {
      for (let j = Math.max(0, Math.floor(x - r - 1)); j < Math.min(this.width, Math.ceil(x + r + 1)); j++) {
        const d = Math.hypot(j + 0.5 - x, i + 0.5 - y);
        const level = Math.round(LEVELS * Math.max(0, Math.min(1, 1 - (d - 0.5) / (r + 0.5))));
        if (level > this.pixels[i * this.width + j]) this.pixels[i * this.width + j] = level;
      }
    }
  }

  undo() {
    if (!this.history.length) return;
    this.pixels = this.history.pop();
    this.paint();
    this.onChange();
  }

  clear() {
    if (this.empty) return;
    this.history.push(this.pixels.slice());
    this.pixels.fill(0);
    this.paint();
    this.onChange();
  }

  paint() {
    if (!this.width) return;
    const ctx = this.canvas.getContext('2d');
    const image = ctx.createImageData(this.width, this.height);
    for (let p = 0; p < this.pixels.length; p++) {
      const g = Math.round((this.pixels[p] / LEVELS) * 255);
      image.data.set([g, g, g, 255], p * 4);
    }
    ctx.putImageData(image, 0, 0);
    this.canvas.dataset.pixels = this.encode();
  }

  // The drawing as the URL keeps it: one hex digit per pixel, row by row.
  encode() {
    return Array.from(this.pixels, (v) => v.toString(16)).join('');
  }

  // Redraw from a `draw` string; false (and nothing changes) when it is not one of this pad's size.
  decode(text) {
    if (typeof text !== 'string' || text.length !== this.width * this.height || !/^[0-9a-f]*$/i.test(text)) return false;
    this.history.push(this.pixels.slice());
    this.pixels = Uint8Array.from(text, (c) => parseInt(c, 16));
    this.paint();
    return true;
  }

  // The drawing as a PNG at the image's own size, base64 without the data: prefix (the request's `image`).
  png() {
    return this.canvas.toDataURL('image/png').replace(/^data:image\/png;base64,/, '');
  }
}
