"""The models Headscope can serve, by name: the built-ins, and Hugging Face checkpoints in local folders.

A model is named by a `ModelSpec`: `minilm`, `dates` or `induction` for a built-in, or
`NAME=PATH` for a checkpoint directory loaded through `transformers` (headscope/models/hf/model.py).
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


BUILTINS: dict[str, Callable[[], AttentionModel]] = {"minilm": _minilm, "dates": _dates, "induction": _induction}  # name -> loader


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: str | None = None  # a local Hugging Face checkpoint directory; None for a built-in

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
                             "for a checkpoint directory write NAME=PATH")
        return cls(name)

    def __str__(self) -> str:
        return self.name if self.path is None else f"{self.name}={self.path}"


DEFAULT_SPECS = tuple(ModelSpec(name) for name in BUILTINS)


def parse_specs(texts: list[str] | None) -> tuple[ModelSpec, ...]:
    """Specs from `--model` values (none: every built-in); names must be unique."""
    specs = tuple(ModelSpec.parse(t) for t in texts) if texts else DEFAULT_SPECS
    names = [s.name for s in specs]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"model name {name!r} is given twice; each model needs its own name")
    return specs


def load_model(spec: ModelSpec | str) -> AttentionModel:
    spec = ModelSpec.parse(spec) if isinstance(spec, str) else spec
    if spec.path is None:
        return BUILTINS[spec.name]()
    from headscope.models.hf.model import HFModel

    return HFModel.load(spec.name, spec.path)


def load_models(specs: tuple[ModelSpec, ...] = DEFAULT_SPECS) -> dict[str, AttentionModel]:
    """name -> loaded model, in the given order (the first is the default)."""
    return {spec.name: load_model(spec) for spec in specs}
