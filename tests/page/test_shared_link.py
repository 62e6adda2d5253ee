"""Opening a shared link of a text: the server is asked for the grid's answer by the page's <link rel="preload"> (before
the page's modules have run), and the page's own fetch takes that response: ONE request to /api/attention, for the
answer the page's state asks for (static/js/lib/api.js twinUrl == routes/pages.py first_answer_url)."""

from urllib.parse import urlencode

import pytest

from tests.conftest import checkpoint_server, watched_page

pytestmark = pytest.mark.browser

SENTENCE = "The cat sat on the mat; the cat saw 1 1 2 dogs."


def open_link(page, query: str) -> list:
    """Open /?query as a person following a link; every request the browser sends, in order."""
    sent = []
    page.on("request", lambda r: sent.append(r))
    page.goto(f"{page.base_url}/?{query}")
    page.wait_for_function("() => document.body.dataset.state === 'ready'", timeout=60_000)
    return sent


def attention_requests(sent):
    return [r for r in sent if r.url.split("?")[0].endswith("/api/attention")]


def preload_urls(page):
    """The URL the page config names as the first answer, and the one the preload link asks for."""
    return page.evaluate("""async () => {
        const config = JSON.parse(document.getElementById('page-config').textContent);
        return { config: config.first_answer,
                 preload: document.querySelector('link[rel=preload][as=fetch]')?.getAttribute('href') ?? null };
    }""")


@pytest.mark.parametrize("params", [
    {"text": SENTENCE},
    {"text": SENTENCE, "model": "minilm", "truncate": "1", "words": "1", "layer": "2", "head": "3", "kind": "encoder"},
    {"text": SENTENCE, "weights": "value_norm", "rollout": "1", "tab": "table"},
    {"text": "a ~tilde* and +plus & amp = eq % pct ü 猫 🐈 'quote' \"dq\" <b>", "weights": "no-such-kind"},
])
def test_a_shared_link_sends_one_attention_request_before_the_page_runs(page, params):
    sent = open_link(page, urlencode(params))
    asked = attention_requests(sent)
    assert len(asked) == 1, [(r.method, r.url) for r in asked]  # the preload, taken by the page's fetch
    (request,) = asked
    assert request.method == "GET"
    main_js = next(i for i, r in enumerate(sent) if r.url.endswith("/static/js/main.js"))
    assert sent.index(request) < main_js  # asked for before the page's script was even requested
    urls = preload_urls(page)
    assert urls["preload"] == urls["config"] and request.url == page.base_url + urls["preload"]
    assert page.locator("canvas.head").count() == 72
    text = params["text"]
    assert page.evaluate("() => new URLSearchParams(location.search).get('text')") == text


def test_repeated_parameters_are_read_as_the_page_reads_them(page):
    """URLSearchParams.get takes the first of repeated parameters; the preload names the same one."""
    sent = open_link(page, urlencode([("text", SENTENCE), ("text", "another text"), ("rollout", "1"), ("rollout", "0")]))
    (request,) = attention_requests(sent)
    assert request.method == "GET"
    assert "another" not in request.url
    assert page.locator("#text").input_value() == SENTENCE


def test_a_link_with_heads_knocked_out_posts_as_before(page):
    """The twin is not used for what it says another way (an ablation): no preload, the page POSTs."""
    sent = open_link(page, urlencode({"text": SENTENCE, "ablate": "encoder:1:2"}))
    (request,) = attention_requests(sent)
    assert request.method == "POST"
    assert page.locator("link[rel=preload][as=fetch]").count() == 0


def test_the_page_without_a_text_preloads_nothing(page):
    page.goto(page.base_url)
    page.wait_for_function("() => document.body.dataset.state === 'idle'")
    assert page.locator("link[rel=preload][as=fetch]").count() == 0
    assert page.evaluate("() => JSON.parse(document.getElementById('page-config').textContent).first_answer") is None


@pytest.fixture(scope="module")
def gpt2_server(tmp_path_factory):
    with checkpoint_server(tmp_path_factory.mktemp("link-checkpoints"), ("gpt2",)) as server:
        yield server


@pytest.mark.parametrize("gen", [None, "3", "007"])
def test_a_generating_models_link_with_its_generation_count(browser, gpt2_server, gen):
    info = gpt2_server.models["tiny-gpt2"].info
    with watched_page(browser, gpt2_server) as page:
        params = {"text": "one two three", "model": "tiny-gpt2", **({"gen": gen} if gen else {})}
        sent = open_link(page, urlencode(params))
        (request,) = attention_requests(sent)
        assert request.method == "GET"
        want = None if gen is None or int(gen) == info.default_new_tokens else str(int(gen))
        assert (f"gen={want}" in request.url) if want else ("gen=" not in request.url)
        assert page.locator("canvas.head").count() > 0
