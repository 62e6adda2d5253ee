"""A real 270-head model in the page (smollm2, 30 layers x 9 heads): every head painted from pooled thumbnails,
the layers labelled, "fit on screen" fitting the whole grid in the window, the detail view and its arrow keys."""

from urllib.parse import urlencode

import pytest
from playwright.sync_api import expect

from headscope.server.app import create_app
from headscope.server.settings import Settings
from tests.conftest import LiveServer, watched_page

pytestmark = pytest.mark.browser

TEXT = "When Mary and John went to the store, John gave a drink to"


@pytest.fixture(scope="module")
def smollm2_server(smollm2):
    app = create_app(Settings(), models={"smollm2": smollm2})
    with LiveServer(app) as server:
        yield server


def ready(page):
    page.wait_for_function("() => document.body.dataset.state === 'ready'", timeout=120_000)


def test_every_head_is_painted_and_fits_on_screen(browser, smollm2_server, smollm2):
    with watched_page(browser, smollm2_server) as page:
        page.goto(f"{smollm2_server.url}/?{urlencode({'model': 'smollm2', 'text': TEXT})}")
        ready(page)
        L, H = smollm2.info.layers, smollm2.info.heads
        heads = page.locator("#grids canvas.head")
        expect(heads).to_have_count(L * H)
        painted = page.evaluate("() => [...document.querySelectorAll('#grids canvas.head')].filter((c) => "
                                "c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some((v, i) => "
                                "i % 4 === 3 && v > 0)).length")
        assert painted == L * H
        labels = page.locator("#grids .grid > span.axis").all_text_contents()
        assert labels == [f"H{h}" for h in range(H)] + [f"L{layer}" for layer in range(L)]

        def last_bottom():
            return page.evaluate("() => document.querySelector('#grids canvas.head:last-of-type')"
                                 ".getBoundingClientRect().bottom")

        assert last_bottom() > page.viewport_size["height"]  # 30 rows do not fit at the default size
        page.check("#opt-fit")
        page.evaluate("() => window.scrollTo(0, 0)")
        assert last_bottom() <= page.viewport_size["height"]
        assert "fit=" in page.url  # in the link too

        heads.nth(H * 17 + 3).click()  # L17H3, one of its induction heads
        expect(page.locator("#detail-title")).to_contain_text("L17H3")
        page.keyboard.press("ArrowDown")
        expect(page.locator("#detail-title")).to_contain_text("L18H3")
        page.keyboard.press("ArrowRight")
        expect(page.locator("#detail-title")).to_contain_text("L18H4")


def test_a_layer_range_shows_those_layers_readably_and_is_in_the_link(browser, smollm2_server, smollm2):
    with watched_page(browser, smollm2_server) as page:
        page.goto(f"{smollm2_server.url}/?{urlencode({'model': 'smollm2', 'text': TEXT, 'fit': '1'})}")
        ready(page)
        L, H = smollm2.info.layers, smollm2.info.heads
        expect(page.locator("#layer-range-note")).to_have_text(f"all {L} layers")
        page.evaluate("() => window.scrollTo(0, 0)")
        every = page.evaluate("() => document.querySelector('#grids canvas.head').getBoundingClientRect().height")
        page.fill("#layer-from", "16")
        page.fill("#layer-to", "19")
        page.press("#layer-to", "Enter")
        heads = page.locator("#grids canvas.head")
        expect(heads).to_have_count(4 * H)
        labels = page.locator("#grids .grid > span.axis").all_text_contents()
        assert labels == [f"H{h}" for h in range(H)] + [f"L{layer}" for layer in range(16, 20)]
        assert heads.first.get_attribute("data-layer") == "16" and heads.last.get_attribute("data-layer") == "19"
        expect(page.locator("#layer-range-note")).to_have_text(f"showing layers 16–19 of 0–{L - 1}")
        assert "layers=16-19" in page.url
        page.evaluate("() => window.scrollTo(0, 0)")
        few = page.evaluate("() => document.querySelector('#grids canvas.head').getBoundingClientRect().height")
        assert few >= 2 * every  # fit on screen grows the thumbnails of the layers shown
        bottom = page.evaluate("() => document.querySelector('#grids canvas.head:last-of-type').getBoundingClientRect().bottom")
        assert bottom <= page.viewport_size["height"]

        page.reload()  # the link keeps the range
        ready(page)
        expect(page.locator("#grids canvas.head")).to_have_count(4 * H)
        assert page.input_value("#layer-from") == "16" and page.input_value("#layer-to") == "19"
        page.click("#layer-all")
        expect(page.locator("#grids canvas.head")).to_have_count(L * H)
        assert "layers=" not in page.url
