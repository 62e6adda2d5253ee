"""Everything the server can be tuned with, in one frozen dataclass passed to `create_app`.

These are the only place each limit is written; GET /api/models publishes them under `limits`.
A text's character limit is per model: `max_chars` in each model's info (headscope/models/analysis.py).
"""

from dataclasses import dataclass

from headscope.models.registry import DEFAULT_SPECS, ModelSpec

LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")  # Host header names always served


@dataclass(frozen=True)
class Settings:
    models: tuple[ModelSpec, ...] = DEFAULT_SPECS  # loaded once, at start; the first is the default
    max_body_bytes: int = 2_000_000  # larger request bodies get 413 before they are read
    body_timeout_s: float = 30.0  # a request body that takes longer to arrive gets 408
    # Requests allowed to wait for the model; beyond that, 503 at once. A waiting request holds only its
    # text (at most a model's max_chars), so the line is long enough that a burst of clients queues
    # rather than being refused and retrying.
    max_waiting: int = 256
    max_batch_tokens: int = 1024  # waiting requests run together up to this many padded tokens
    # ...and at most this many: answers are built one after another, so a batch of 8 short texts keeps the
    # wait of whoever is next in line short, while batching still pays (headscope/server/runner.py, bench/storm.py)
    max_batch_size: int = 8
    # A client (connection) not answered within this many seconds is placed this much earlier in the line,
    # ahead of clients served just now: a newcomer is not stuck behind a retry storm (headscope/server/runner.py)
    newcomer_lead_s: float = 10.0
    # An answer in format json holds at most this many attention weights (layers x heads x query x key,
    # all kinds): 2M floats are ~26 MB of JSON, about the size of the largest compact answer (MiniLM at
    # 512 tokens: 19 MB). Larger ones get 422 asking for format: compact.
    max_json_floats: int = 2_000_000
    corpus_max_texts: int = 2000  # sentences per /api/corpus request
    corpus_max_tokens: int = 100_000  # tokens per /api/corpus request, all sentences together
    corpus_batch_size: int = 32  # sentences run through the model together (corpus and probe)
    # POST /api/probe: the JSONL text of pairs, at most this many characters and pairs, and at most this
    # many tokens in its distinct sentences together (what bounds the model's work, as corpus_max_tokens)
    probe_max_chars: int = 1_000_000
    probe_max_pairs: int = 2000
    probe_max_tokens: int = 100_000
    # POST /api/importance and `headscope importance --texts`: every text runs 1 + 2 x heads times (MiniLM: 145)
    importance_max_texts: int = 64  # texts per request
    importance_max_tokens: int = 4096  # tokens per request, all texts together
    # Connections (headscope/server/http/connections.py). Beyond max_connections, a new connection closes the longest-idle
    # one (no request in progress, nothing left to send); if none is idle it gets 503.
    max_connections: int = 256
    max_header_bytes: int = 65_536  # request line and headers; larger get 431
    header_timeout_s: float = 10.0  # a request line and headers must arrive within this, else closed
    keep_alive_s: float = 5.0  # an idle keep-alive connection is closed after this
    send_timeout_s: float = 30.0  # a client that stops reading its answer for this long is dropped
    # Host header names served besides LOCAL_HOSTS and the address the request came to (DNS rebinding
    # defence); "*" serves any.
    allowed_hosts: tuple[str, ...] = ()
