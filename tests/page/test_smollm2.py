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
