"""The models Headscope can serve, by name. Each loads from files installed with the project."""

from model.analysis import AttentionModel


def load_model(name: str) -> AttentionModel:
    if name == "minilm":
        from model.minilm import MiniLM

        return MiniLM.load()
    if name == "dates":
        from model.dates import DatesModel

        return DatesModel.load()
    raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")


MODEL_NAMES = ("minilm", "dates")


def load_models(names: tuple[str, ...] = MODEL_NAMES) -> dict[str, AttentionModel]:
    """name -> loaded model, in the given order (the first is the default)."""
    return {name: load_model(name) for name in names}
