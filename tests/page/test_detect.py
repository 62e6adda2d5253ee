"""The Detect tab in real Chromium: every head's detector scores drawn as the API gives them, the heads found
named, the seeded inputs shown literally, the seed in the URL, and a model where it cannot run says why."""

import numpy as np
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def run(page):
    page.click("#detect-run")
    page.wait_for_function("() => ['ready', 'error'].includes(document.getElementById('detect-plots').dataset.state)",
                           timeout=120_000)


def test_scores_found_heads_and_inputs_equal_the_api(page, client):
    page.goto(f"{page.base_url}/?tab=detect&model=induction")
    page.fill("#detect-seed", "7")
    page.fill("#detect-sequences", "4")
    run(page)
    expected = client.post("/api/detect", json={"model": "induction", "seed": 7, "sequences": 4}).json()
    for kind, detectors in expected["scores"].items():
        for detector, scores in detectors.items():
            if scores is None:
                continue
            z = page.evaluate(f"() => document.querySelector('#detect-plots .plot[data-kind=\"{kind}\"]"
                              f"[data-detector=\"{detector}\"]').data[0].z")
            np.testing.assert_allclose(np.array(z), scores, rtol=1e-6, atol=1e-7)  # float32 in the page
            heads = expected["found"][kind][detector]
            line = page.locator(f"#detect-found li[data-kind='{kind}'][data-detector='{detector}']")
            for h in heads:
                expect(line).to_contain_text(f"{h['name']} {h['score']:.2f}")
    inputs = page.locator("#detect-inputs li").all_text_contents()
    assert inputs == expected["inputs"]["repeated"] + expected["inputs"]["natural"]
    assert "seed=7" in page.url and "sequences=4" in page.url

    page.goto(page.url)  # the link runs it again, with the same seed
    page.wait_for_function("() => document.getElementById('detect-plots').dataset.state === 'ready'", timeout=120_000)
    assert page.input_value("#detect-seed") == "7"
    assert page.locator("#detect-inputs li").all_text_contents() == inputs


def test_too_many_sequences_is_refused_in_words(page, client):
    limit = client.get("/api/models").json()["limits"]["detect_max_sequences"]
    page.goto(f"{page.base_url}/?tab=detect&model=induction")
    page.fill("#detect-sequences", str(limit + 1))
    run(page)
    expect(page.locator("#detect-status")).to_contain_text(f"the limit is {limit}")
    page.console_errors.clear()  # the 422 the browser logs
