"""Everything the server can be tuned with, in one frozen dataclass passed to `create_app`.

This is the only place each limit is written. A field made with `limit(default, about)` is a limit the server
enforces on clients: GET /api/models publishes every one of them under `limits` with its value, and its words
become its description in /openapi.json (headscope/server/schemas.py `Limits`). Error messages name the limit
by its field name. A text's character and token limits are per model: `max_chars` and `max_tokens` in each
model's info (headscope/models/analysis.py).
"""

from dataclasses import dataclass, field, fields

from headscope.analyses.heads import BATCH_TOKENS
from headscope.models.analysis import MAX_NEW_TOKENS
from headscope.models.registry import DEFAULT_SPECS, ModelSpec

LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")  # Host header names always served


def limit(default, about: str):
    """A Settings field that is a limit clients meet: published in GET /api/models with `about` as its words."""
    return field(default=default, metadata={"about": about})


@dataclass(frozen=True)
class Settings:
    models: tuple[ModelSpec, ...] = DEFAULT_SPECS  # loaded once, at start; the first is the default
    max_body_bytes: int = limit(2_000_000, "Largest request body, in bytes; larger gets 413 before it is read.")
    body_timeout_s: float = limit(30.0, "Seconds a request body has to arrive; slower gets 408.")
    # A waiting request holds only its text (at most a model's max_chars), so the line is long enough that a
    # burst of clients queues rather than being refused and retrying.
    max_waiting: int = limit(256, "Requests that may wait for the model at once; more get 503 and Retry-After.")
    max_batch_tokens: int = BATCH_TOKENS  # texts run together (waiting requests, corpus, probe batches) up to this many padded tokens
    # ...and at most this many: answers are built one after another, so a batch of 8 short texts keeps the
    # wait of whoever is next in line short, while batching still pays (headscope/server/runner.py, bench/storm.py)
    max_batch_size: int = 8
    # A client (connection) not answered within this many seconds is placed this much earlier in the line,
    # ahead of clients served just now: a newcomer is not stuck behind a retry storm (headscope/server/runner.py)
    newcomer_lead_s: float = 10.0
    # 2M floats are ~26 MB of JSON, about the size of the largest compact answer (MiniLM at 512 tokens: 19 MB).
    max_json_floats: int = limit(2_000_000, "Most attention weights (layers x heads x query x key, all kinds) in a "
                                 "`format: json` answer; larger gets 422: ask for `format: compact`.")
    # Image models (ModelInfo.takes == "image"): the upload's size is checked before base64 is decoded, its pixel
    # count from the file's header before any pixel is (a decompression bomb is refused without memory growing)
    max_image_bytes: int = limit(1_000_000, "Largest image file (PNG or JPEG, after base64 decoding) in bytes; larger "
                                 "gets 422 before it is decoded.")
    max_image_pixels: int = limit(4_194_304, "Most pixels (width x height, from the file's header) of an image; more "
                                  "gets 422 before its pixels are decoded (2048 x 2048).")
    corpus_max_texts: int = limit(2000, "Most sentences in one /api/corpus request.")
    corpus_max_tokens: int = limit(100_000, "Most tokens in one /api/corpus request, all sentences together.")
    corpus_batch_size: int = 32  # sentences run through the model together (corpus and probe)
    # POST /api/probe: the model's work is bounded by the tokens of the distinct sentences, as corpus_max_tokens
    probe_max_chars: int = limit(1_000_000, "Most characters in the `pairs` text of one /api/probe request.")
    probe_max_pairs: int = limit(2000, "Most pairs in one /api/probe request.")
    probe_max_tokens: int = limit(100_000, "Most tokens in the distinct sentences of one /api/probe request, "
                                  "together.")
    # POST /api/importance and `headscope importance --texts`: every text runs 1 + 2 x heads times (MiniLM: 145)
    importance_max_texts: int = limit(64, "Most texts in one /api/importance request.")
    importance_max_tokens: int = limit(4096, "Most tokens in one /api/importance request, all texts together.")
    detect_max_sequences: int = limit(64, "Most random sequences in one /api/detect request.")
    # POST /api/patch and `headscope patch`: every cell is one row of a batched forward pass of the prompt
    patch_max_work: int = limit(100_000, "Most token positions one /api/patch request runs: (cells + 2) x the prompt's "
                                "positions (input and decoder); each cell is one patched pass of the prompt.")
    predict_max_k: int = limit(20, "Most next-token predictions one /api/predict request returns.")
    # Long jobs (corpus, importance, probes, patching: many model steps each), per client address
    # (headscope/server/runner.py)
    long_jobs_per_client: int = limit(2, "Long jobs (/api/corpus, /api/importance, /api/probe, /api/patch) one client "
                                      "address may run at once; more get 429. Their steps wait for shorter requests.")
    # Connections (headscope/server/http/connections.py)
    max_connections: int = limit(256, "Open connections; beyond it a new one closes the longest-idle one, or "
                                 "gets 503 if none is idle.")
    max_header_bytes: int = limit(65_536, "Largest request line and headers, in bytes; larger gets 431.")
    header_timeout_s: float = limit(10.0, "Seconds a connection has to send its request line and headers; "
                                    "slower is closed (408 if part of a request came).")
    keep_alive_s: float = limit(5.0, "Seconds an idle keep-alive connection stays open.")
    send_timeout_s: float = limit(30.0, "Seconds a client may leave its answer unread before it is dropped.")
    max_unread_bytes: int = limit(256_000_000, "Bytes of answers all clients together may leave unread; beyond it "
                                  "the connection that stopped reading first is dropped.")
    # Host header names served besides LOCAL_HOSTS and the address the request came to (DNS rebinding
    # defence); "*" serves any.
    allowed_hosts: tuple[str, ...] = ()


# Limits that are not settings: fixed by the models' code.
FIXED_LIMITS = {
    "max_new_tokens": (MAX_NEW_TOKENS, "Most tokens one request may ask any model to generate (each model's own "
                       "`max_new_tokens` may be lower)."),
}

# name -> (type, words) of every limit clients meet: the settings made with `limit`, then the fixed ones
LIMITS: dict[str, tuple[type, str]] = {
    **{f.name: (f.type, f.metadata["about"]) for f in fields(Settings) if "about" in f.metadata},
    **{name: (type(value), about) for name, (value, about) in FIXED_LIMITS.items()},
}


def public_limits(settings: Settings) -> dict[str, int | float]:
    """Every limit the server enforces on clients, by name: what GET /api/models publishes under `limits`."""
    return {name: getattr(settings, name) if name not in FIXED_LIMITS else FIXED_LIMITS[name][0] for name in LIMITS}
