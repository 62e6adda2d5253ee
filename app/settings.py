"""Everything the server can be tuned with, in one frozen dataclass passed to `create_app`."""

from dataclasses import dataclass

from model.registry import DEFAULT_SPECS, ModelSpec


@dataclass(frozen=True)
class Settings:
    models: tuple[ModelSpec, ...] = DEFAULT_SPECS  # loaded once, at start; the first is the default
    max_body_bytes: int = 2_000_000  # larger request bodies get 413 before they are read
    body_timeout_s: float = 30.0  # a request body that takes longer to arrive gets 408
    max_waiting: int = 16  # requests allowed to wait for the model; beyond that, 503 at once
    max_batch_tokens: int = 1024  # waiting requests run together up to this many padded tokens
    corpus_max_texts: int = 2000  # sentences per /api/corpus request
    corpus_max_tokens: int = 100_000  # tokens per /api/corpus request, all sentences together
    corpus_batch_size: int = 32  # sentences run through the model together
