"""Regenerate the README's screenshots: `python -m docs.make_screenshots` (needs /usr/bin/chromium)."""

from pathlib import Path
from urllib.parse import urlencode

from bench.common import ServerProcess

HERE = Path(__file__).parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SENTENCE = "The cat sat on the mat because it was unbelievably warm, and the cat slept."


def main() -> None:
    from playwright.sync_api import sync_playwright

    with ServerProcess(models="minilm,dates") as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 950})

        def shot(name: str, wait: str, **params):
            page.goto(f"{server.url}/?{urlencode(params)}")
            page.wait_for_function("() => document.body.dataset.state === 'ready'")
            page.wait_for_selector(wait)
            page.wait_for_timeout(500)
            page.screenshot(path=HERE / name)
            print("wrote", HERE / name)

        shot("grid.png", "canvas.head", text=SENTENCE)
        shot("detail.png", "#heatmap .xtick text", text=SENTENCE, layer=0, head=2)
        shot("table.png", "#head-table tbody tr", text=SENTENCE, tab="table")
        page.set_viewport_size({"width": 1300, "height": 1250})
        shot("dates.png", 'canvas.head[data-kind="cross"]', text="Wednesday, the 25th of November 2026", model="dates", step=6)
        page.set_viewport_size({"width": 1300, "height": 950})
        shot("dates-cross.png", "#heatmap .xtick text", text="Wednesday, the 25th of November 2026", model="dates",
             kind="cross", layer=1, head=0, step=9)
        browser.close()


if __name__ == "__main__":
    main()
