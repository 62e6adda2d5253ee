"""Headscope inside a Jupyter notebook, with no server: `analyze` runs a model, `show` draws inline.

    from headscope.notebook import show, analyze
    show("The cat sat on the mat.")                     # a built-in model (the first of BUILTINS)
    show("Some text", model="bert=/path/to/checkpoint") # a local Hugging Face checkpoint, NAME=PATH
    show(outputs.attentions, tokens)                    # arrays from anywhere, as bertviz.head_view
    result = analyze("The cat sat on the mat.")         # tokens, numpy arrays, layouts, head metrics
    show(image="digit.png", model="digits")             # an image model: a file, bytes, a PIL image or pixels

`show` returns a `View`; a notebook displays it through `_repr_html_` (Jupyter, JupyterLab, VS Code,
nbconvert). Its HTML carries everything it draws with: the page's own modules (grid.js, views.js,
colors.js, api.js, dom.js, joined by headscope/notebook/bundle.py) plus notebook.js and canvasmap.js for the
detail view, inline; the attention as the API's compact body (8-bit per head, headscope/server/encoding.py),
deflated and base64-encoded. No CDN, no server, no kernel comm: it draws after a kernel restart,
in a saved notebook and in an nbconvert HTML file. Plotly.js is not embedded (3.5 MB); the detail
heatmap is a canvas.
"""

import base64
import functools
import re
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import torch

from headscope.analyses.heads import summarize_heads
from headscope.analyses.metrics import METRIC_DEFINITIONS, METRICS
from headscope.models.analysis import CROSS, DECODER_SELF, SELF, Analysis, AttentionModel, Layout
from headscope.models.registry import DEFAULT_SPECS, ModelSpec, load_model
from headscope.notebook.bundle import bundle
from headscope.server.encoding import choice_scale, dumps, read_safetensors, safetensors_body
from headscope.server.files import JS_LIB, STATIC, TEMPLATES

DEFAULT_MODEL = DEFAULT_SPECS[0].name  # the server's default model is the notebook's too
ARRAYS = "attention arrays"  # the model name shown for arrays passed in
ZLIB_LEVEL = 6  # 128 tokens x 72 heads: 1.2 MB of bytes -> ~0.4 MB in ~0.2 s; level 9 saves ~3% for 5x the time
ENTRY = "notebook"  # static/js/lib/notebook.js, and every module it imports (all in lib/)


@dataclass(repr=False)
class Result:
    """One text (or one set of arrays) analysed: what `show` draws, as Python values."""

    model: str
    text: str | None  # None for arrays passed in
    tokens: list[str]  # the input tokens; `analysis.output_tokens` are an encoder–decoder's decoder positions
    attention: dict[str, np.ndarray]  # kind -> (layer, head, query_pos, key_pos) float32 weights
    layout: dict[str, Layout]  # kind -> which tokens index its rows and columns, and whether it is causal
    heads: dict[str, list[dict]]  # kind -> a record per head: layer, head, name, metrics, roles
    analysis: Analysis  # everything else: offsets, special tokens, word ids, generation

    def __repr__(self) -> str:
        kinds = ", ".join(f"{k} {tuple(a.shape)}" for k, a in self.attention.items())
        return f"Result(model={self.model!r}, {len(self.tokens)} tokens, attention: {kinds})"


class View:
    """A drawn Result: notebooks display it inline; `save` writes it as a standalone HTML page."""

    def __init__(self, result: Result):
        self.result = result
        self.html = render(result)

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return f"<Headscope view of {self.result!r}: {len(self.html) / 1e6:.2f} MB of HTML>"

    def save(self, path: str | Path) -> Path:
        """Write a whole HTML page with this view: opens from disk, offline, in any browser."""
        path = Path(path)
        path.write_text(render(self.result, page=True), encoding="utf-8")
        return path


# ---- models ---------------------------------------------------------------------------------------


@functools.cache
def _loaded(spec: ModelSpec) -> AttentionModel:
    return load_model(spec)


def get_model(model: str | ModelSpec | AttentionModel = DEFAULT_MODEL) -> AttentionModel:
    """A built-in name, `NAME=PATH`, a ModelSpec (loaded once per process), or a loaded model."""
    if isinstance(model, str):
        model = ModelSpec.parse(model)
    if isinstance(model, ModelSpec):
        return _loaded(model)
    if hasattr(model, "analyze") and hasattr(model, "info"):
        return model
    raise TypeError(f"model must be a name, NAME=PATH, a ModelSpec or a loaded model, not {type(model).__name__}")


def result_of(analysis: Analysis, text: str | None) -> Result:
    return Result(
        model=analysis.model,
        text=text,
        tokens=analysis.tokens,
        attention={kind: pattern.numpy() for kind, pattern in analysis.patterns.items()},
        layout=dict(analysis.layout),
        heads=summarize_heads(analysis),
        analysis=analysis,
    )


def analyze(text: str | None = None, model: str | ModelSpec | AttentionModel = DEFAULT_MODEL, *, image=None,
            truncate: bool = False, new_tokens: int | None = None) -> Result:
    """Run `text` through `model`. truncate: cut a text too long for the model instead of raising
    TooManyTokens; new_tokens: for a model that generates, how many tokens (None: its default).

    image: for an image model (`model.info.takes == "image"`, e.g. "digits"), the picture instead of a text: a PNG or
    JPEG file's path or bytes (read as the server reads an upload), a PIL image, or (H, W) / (H, W, 3) pixels (numpy
    or torch; uint8 0..255 or floats in [0, 1]). The result's tokens are the positions ("[CLS]", "r0c0" ...) and
    `result.analysis.image` says the grid, the prediction and the probabilities."""
    m = get_model(model)
    if image is not None or m.info.takes == "image":
        if text is not None:
            raise TypeError(f"give a text or an image, not both ({m.info.name} takes {m.info.takes})")
        if m.info.takes != "image":
            raise ValueError(f"{m.info.name} takes a text, not an image")
        if image is None:
            raise ValueError(f"{m.info.name} takes an image: give analyze(image=..., model={m.info.name!r})")
        return result_of(m.analyze(picture(image)), None)
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text is empty: give a sentence to analyze")
    return result_of(m.analyze(text, truncate=truncate, new_tokens=new_tokens), text)


def picture(image) -> torch.Tensor:
    """A path, bytes, PIL image or pixel array -> (H, W, 3) or (H, W) float32 pixels in [0, 1]."""
    from headscope.models.images import read_image
    from headscope.server.settings import Settings

    if isinstance(image, str | Path):
        image = Path(image).read_bytes()
    if isinstance(image, bytes | bytearray):
        return read_image(bytes(image), Settings().max_image_pixels)  # (H, W, 3); BadImage says what is wrong
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        image = np.asarray(image.convert("RGB"))
    x = image if isinstance(image, torch.Tensor) else torch.from_numpy(np.array(image))  # a copy: writable
    return x.float() / 255 if x.dtype == torch.uint8 else x.float()


# ---- arrays from anywhere -----------------------------------------------------------------------


def _tensor(x, name: str) -> torch.Tensor:
    if x is None:  # transformers' fused (sdpa, flash) attention returns no weights
        raise ValueError(f"{name} is None: the model returned no attention weights; load it with "
                         "attn_implementation='eager' and call it with output_attentions=True")
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float32)
    try:
        return torch.from_numpy(np.array(x, dtype=np.float32))
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a tensor or an array of numbers, not {type(x).__name__}") from e


def to_pattern(attention, name: str = "attention") -> torch.Tensor:
    """(layer, head, query_pos, key_pos) float32 from the forms libraries hand out:
      a tuple or list with one entry per layer, each (batch, head, q, k) (batch 0 is taken; this is
        `transformers`' output_attentions) or (head, q, k) (TransformerLens's cache["pattern", l][0]);
      one array (layer, head, q, k), or (layer, batch, head, q, k) (batch 0; a stacked TransformerLens
        cache, cache.stack_activation("pattern")); torch tensors, numpy arrays or anything numpy reads.
    """
    if isinstance(attention, (list, tuple)):
        if not attention:
            raise ValueError(f"{name} is empty: it has no layers")
        layers = []
        for i, a in enumerate(attention):
            a = _tensor(a, f"{name}[{i}]")
            if a.dim() == 4:
                a = a[0]  # (B, H, Tq, Tk) -> (H, Tq, Tk)
            if a.dim() != 3:
                raise ValueError(f"{name}[{i}] has shape {tuple(a.shape)}: each layer must be (batch, head, "
                                 "query_pos, key_pos) or (head, query_pos, key_pos)")
            if layers and a.shape != layers[0].shape:
                raise ValueError(f"{name}[{i}] has shape {tuple(a.shape)} but {name}[0] has {tuple(layers[0].shape)}")
            layers.append(a)
        pattern = torch.stack(layers)  # (L, H, Tq, Tk)
    else:
        pattern = _tensor(attention, name)
        if pattern.dim() == 5:
            pattern = pattern[:, 0]  # (L, B, H, Tq, Tk) -> (L, H, Tq, Tk)
    if pattern.dim() != 4:
        raise ValueError(f"{name} has shape {tuple(pattern.shape)}: give (layer, head, query_pos, key_pos), "
                         "(layer, batch, head, query_pos, key_pos) or one (batch, head, q, k) array per layer")
    if 0 in pattern.shape:
        raise ValueError(f"{name} has shape {tuple(pattern.shape)}: no layers, heads or positions")
    if not torch.isfinite(pattern).all() or (pattern < 0).any():
        raise ValueError(f"{name} has negative, NaN or infinite weights: give attention after softmax")
    return pattern.contiguous()


def _tokens(tokens, count: int, name: str, what: str) -> list[str]:
    if tokens is None:
        raise ValueError(f"{name} is missing: give the {count} tokens of the {what}")
    tokens = [str(t) for t in tokens]
    if len(tokens) != count:
        raise ValueError(f"{name} has {len(tokens)} tokens but the attention has {count} {what}")
    return tokens


def _is_causal(pattern: torch.Tensor) -> bool:
    """Whether every weight above the diagonal is exactly 0 (query i sees only keys j <= i)."""
    return bool((pattern.triu(diagonal=1) == 0).all())


def from_attention(attention=None, tokens=None, *, causal: bool | None = None, special=None,
                   encoder_attention=None, decoder_attention=None, cross_attention=None,
                   encoder_tokens=None, decoder_tokens=None) -> Result:
    """A Result from attention arrays of any model, with per-head metrics (headscope/analyses/heads.py).

    attention, tokens: self-attention over `tokens` (see `to_pattern` for the forms accepted), drawn
        as the kind "self".
        causal: whether query i sees only keys j <= i (a decoder-only LM); None: causal exactly
        when every weight above the diagonal is 0. special: optional flags marking special tokens
        (for "hide special tokens", and for the metrics: `sink` is the weight on them, the positional
        metrics leave them out); none are marked otherwise.
    encoder_attention, decoder_attention, cross_attention with encoder_tokens, decoder_tokens: an
        encoder–decoder, as bertviz.head_view takes it; the decoder's self-attention is causal and
        cross-attention has decoder positions as rows and encoder tokens as columns.
    """
    seq2seq = any(a is not None for a in (encoder_attention, decoder_attention, cross_attention))
    if seq2seq and attention is not None:
        raise TypeError("give either attention (one self-attention) or encoder/decoder/cross attention, not both")
    patterns, layout = {}, {}
    output_tokens = None
    if not seq2seq:
        if attention is None:
            raise TypeError("no attention given: pass attention arrays and their tokens")
        pattern = to_pattern(attention)
        L, H, Tq, Tk = pattern.shape
        if Tq != Tk:
            raise ValueError(f"attention is {Tq}x{Tk}: self-attention needs as many queries as keys; "
                             "for cross-attention use encoder_attention/decoder_attention/cross_attention")
        tokens = _tokens(tokens, Tk, "tokens", "positions")
        if causal is None:
            causal = _is_causal(pattern)
        elif causal and not _is_causal(pattern):
            raise ValueError("causal=True but the attention has weight above the diagonal (on later keys)")
        patterns["self"], layout["self"] = pattern, Layout("tokens", "tokens", causal=causal)
    else:
        if tokens is not None or causal is not None:
            raise TypeError("tokens and causal go with attention; an encoder–decoder takes encoder_tokens and decoder_tokens")
        for kind, given, kind_layout in (("encoder", encoder_attention, SELF), ("decoder", decoder_attention, DECODER_SELF),
                                         ("cross", cross_attention, CROSS)):
            if given is not None:
                patterns[kind], layout[kind] = to_pattern(given, f"{kind}_attention"), kind_layout
        if "decoder" in patterns and not _is_causal(patterns["decoder"]):
            raise ValueError("decoder_attention has weight above the diagonal: a decoder's self-attention is causal")
        shapes = {kind: p.shape for kind, p in patterns.items()}
        encoder_count = shapes["encoder"][3] if "encoder" in shapes else shapes["cross"][3] if "cross" in shapes else None
        decoder_count = shapes["decoder"][2] if "decoder" in shapes else shapes["cross"][2] if "cross" in shapes else None
        for kind, (_, _, Tq, Tk) in shapes.items():
            rows = encoder_count if layout[kind].rows == "tokens" else decoder_count
            columns = encoder_count if layout[kind].columns == "tokens" else decoder_count
            if (Tq, Tk) != (rows, columns):
                raise ValueError(f"{kind}_attention is {Tq}x{Tk} but the other arrays give {rows}x{columns}")
        tokens = _tokens(encoder_tokens, encoder_count, "encoder_tokens", "encoder positions") if encoder_count else []
        if decoder_count:
            output_tokens = _tokens(decoder_tokens, decoder_count, "decoder_tokens", "decoder positions")
    if special is not None:
        special = [bool(s) for s in special]
        if len(special) != len(tokens):
            raise ValueError(f"special has {len(special)} flags for {len(tokens)} tokens")
    n = len(tokens)
    analysis = Analysis(
        model=ARRAYS, tokens=tokens, offsets=[None] * n, special=special or [False] * n, words=[None] * n,
        patterns=patterns, layout=layout, output_tokens=output_tokens,
        output_special=None if output_tokens is None else [False] * len(output_tokens),
        output_words=None if output_tokens is None else [None] * len(output_tokens),
    )
    return result_of(analysis, None)


# ---- drawing --------------------------------------------------------------------------------------


def show(source=None, tokens=None, *, model: str | ModelSpec | AttentionModel = DEFAULT_MODEL, text: str | None = None,
         image=None, attention=None, truncate: bool = False, new_tokens: int | None = None, causal: bool | None = None,
         special=None, encoder_attention=None, decoder_attention=None, cross_attention=None,
         encoder_tokens=None, decoder_tokens=None) -> View:
    """Draw every head inline: the grid, a detail view on click, the head table.

        show("some text", model="minilm")      run a model: a built-in, NAME=PATH, a ModelSpec
        show(attention, tokens)                 arrays, in bertviz.head_view's order (see from_attention)
        show(attention=..., tokens=...)         the same by keyword
        show(encoder_attention=..., decoder_attention=..., cross_attention=...,
             encoder_tokens=..., decoder_tokens=...)    an encoder–decoder, as bertviz takes it
        show(image="digit.png", model="digits") an image model: the picture (see analyze); tokens are the patches
        show(analyze(...))                      a Result

    Returns a View: the last expression of a cell is displayed; elsewhere use display(show(...)).
    """
    if isinstance(source, Result):
        result = source
    elif image is not None:
        if source is not None or text is not None:
            raise TypeError("give a text or an image, not both")
        result = analyze(model=model, image=image)
    elif isinstance(source, str) or text is not None:
        if isinstance(source, str) and text is not None:
            raise TypeError("text is given twice")
        arrays = (tokens, attention, causal, special, encoder_attention, decoder_attention, cross_attention,
                  encoder_tokens, decoder_tokens)
        if any(a is not None for a in arrays):
            raise TypeError("give a text to run through a model, or attention arrays with their tokens, not both")
        result = analyze(source if isinstance(source, str) else text, model, truncate=truncate, new_tokens=new_tokens)
    else:
        if source is not None and attention is not None:
            raise TypeError("attention is given twice (as the first argument and by keyword)")
        result = from_attention(source if source is not None else attention, tokens, causal=causal, special=special,
                                encoder_attention=encoder_attention, decoder_attention=decoder_attention,
                                cross_attention=cross_attention, encoder_tokens=encoder_tokens,
                                decoder_tokens=decoder_tokens)
    return View(result)


def fields(result: Result) -> dict:
    """What /api/attention answers for this result (headscope/server/answers.py attention_fields), plus the text and
    the metric definitions, for notebook.js."""
    from headscope.server.answers import attention_fields

    pool = {kind: [1, 1] for kind in result.analysis.patterns}
    return {**attention_fields(result.analysis, "compact", pool), "heads": result.heads, "text": result.text,
            "metrics": {name: METRIC_DEFINITIONS[name] for name in METRICS}}


def script_json(value) -> str:
    """JSON that is safe inside a <script> element: <, > and & become \\u escapes, so no text in it
    (a token such as "</script>" or "<!--") can end the element or start markup."""
    text = dumps(value).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@functools.cache
def notebook_script() -> str:
    """notebook.js and every module it imports, joined into one classic script (headscope/notebook/bundle.py)."""
    source = bundle(ENTRY, JS_LIB)
    if re.search(r"</script|<!--", source, re.IGNORECASE):
        raise ValueError("the joined script contains '</script' or '<!--', which would end it inside a page")
    return source


@functools.cache
def _template():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    return env.get_template("notebook.html")


def render(result: Result, page: bool = False) -> str:
    """The HTML of one output (a fragment, or a whole page with `page`), with a fresh unique id."""
    patterns = result.analysis.patterns
    scales = {kind: choice_scale(pattern, result.analysis.layout[kind].causal) for kind, pattern in patterns.items()}
    body = safetensors_body(patterns, fields(result), exact=False, scales=scales)
    data = {"format": "compact", "encoding": "deflate, base64", "body": base64.b64encode(zlib.compress(body, ZLIB_LEVEL)).decode()}
    return _template().render(
        id=f"hs-{uuid.uuid4().hex}",
        css=(STATIC / "notebook.css").read_text(encoding="utf-8"),
        data=script_json(data),
        script=notebook_script(),
        page=page,
        title=result.text[:60] if result.text else result.model,
    )


DATA = re.compile(r'<script type="application/json" class="hs-data">(.*?)</script>', re.DOTALL)


def read_output(html: str) -> dict:
    """Decode what an output embeds (the inverse of `render`, for tests and for reading saved
    notebooks): the header, with attention as float32 arrays (weight = byte / 255 * scale)."""
    found = DATA.findall(html)
    if len(found) != 1:
        raise ValueError(f"expected one Headscope output in the HTML, found {len(found)}")
    data = orjson.loads(found[0])
    return read_safetensors(zlib.decompress(base64.b64decode(data["body"])))
