"""headscope/notebook/show.py: Headscope inside Jupyter. Unit tests of analyze/show and the embedded numbers,
then the real thing: a notebook executed by a Jupyter kernel (nbclient), saved, read back,
exported by nbconvert, and opened from disk in headless Chromium with every request recorded."""

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from headscope.analyses.heads import summarize_heads
from headscope.analyses.metrics import METRICS
from headscope.models.analysis import CROSS, DECODER_SELF, SELF
from headscope.models.registry import ModelSpec
from headscope.notebook.show import (
    ARRAYS,
    View,
    analyze,
    from_attention,
    get_model,
    read_output,
    render,
    script_json,
    show,
    to_pattern,
)

ROOT = Path(__file__).resolve().parents[2]
SENTENCE = "The cat sat on the mat; the cat saw 1 1 2 dogs."
# Plain English prose to reach a given length: attention on real text, not on a repeated phrase.
PROSE = (
    "Attention heads are small parts of a transformer that decide, for every token, which other tokens to read "
    "from. Researchers look at them to guess what a model has learned: some heads attend to the previous word, "
    "some to the first token of the sentence, some copy a token that followed an earlier copy of the current one. "
    "None of this explains a decision on its own, but it is a useful place to start asking questions. A notebook "
    "is where most of that looking happens, because the model, the data and the plots live side by side and can "
    "be changed in a few seconds. The river ran high after the storms of early spring, and the old bridge at the "
    "edge of the village was closed for three weeks while engineers checked its stones. Children walked the long "
    "way round to school, past the bakery, the post office and the field where horses grazed in the morning mist. "
    "When the bridge opened again the mayor gave a short speech, thanked the workers by name and promised that the "
    "next repair would not wait for a flood. Nobody believed the promise, yet everybody clapped, and the baker sold "
    "more bread that afternoon than in any day of the previous month. Numbers such as 1984, 3.14 and 42 appear in "
    "the text as well, together with punctuation: commas, semicolons; colons, question marks? and exclamations! "
    "Long inputs show how a head's pattern changes with distance, whether it keeps a fixed window or spreads its "
    "weight thinly over hundreds of positions, and whether a sink such as the separator token collects what is "
    "left over when nothing else is relevant."
)


def text_of(model, n: int) -> str:
    """The shortest prefix of PROSE (repeated as needed) with at least n tokens."""
    words = PROSE.split() * 4
    lo, hi = 1, len(words)
    while lo < hi:
        mid = (lo + hi) // 2
        if model.count_tokens(" ".join(words[:mid])) >= n:
            hi = mid
        else:
            lo = mid + 1
    return " ".join(words[:lo])


def within_8_bits(drawn: np.ndarray, reference: torch.Tensor, extra: float = 0.0):
    """Each head's weights are bytes scaled to its maximum: error at most max / 510 (+ `extra`)."""
    ref = reference.numpy()
    bound = ref.max(axis=(-2, -1), keepdims=True) / 510 + extra + 1e-7
    assert drawn.shape == ref.shape
    assert (np.abs(drawn - ref) <= bound).all(), float(np.abs(drawn - ref).max())


# ---- analyze and show, in Python ---------------------------------------------------------------------


def test_analyze_returns_numpy_arrays_layouts_and_head_metrics(minilm):
    result = analyze(SENTENCE, minilm)
    reference = minilm.analyze(SENTENCE)
    assert result.tokens == reference.tokens and result.model == "minilm" and result.text == SENTENCE
    assert result.layout == {"encoder": SELF}
    attention = result.attention["encoder"]
    assert isinstance(attention, np.ndarray) and attention.dtype == np.float32
    assert attention.shape == (6, 12, len(reference.tokens), len(reference.tokens))
    np.testing.assert_allclose(attention, reference.patterns["encoder"].numpy(), atol=1e-6)
    heads = result.heads["encoder"]
    assert [(r["layer"], r["head"]) for r in heads] == [(l, h) for l in range(6) for h in range(12)]
    assert heads == summarize_heads(reference)["encoder"]
    assert "encoder (6, 12" in repr(result)


def test_models_are_named_as_on_the_command_line_and_loaded_once_per_process():
    assert get_model("minilm") is get_model(ModelSpec("minilm"))  # one load, whichever way it is named
    assert get_model("minilm").info.name == "minilm"
    with pytest.raises(ValueError, match="unknown model 'gpt9'"):
        analyze(SENTENCE, "gpt9")
    with pytest.raises(ValueError, match="text is empty"):
        analyze("   ", "minilm")


def test_output_for_128_tokens_is_under_1_mb_and_for_512_tokens_under_6_mb(minilm):
    for n, limit in ((128, 1_000_000), (512, 6_000_000)):
        view = show(text_of(minilm, n), model=minilm, truncate=True)
        size = len(view.html.encode())
        assert size <= limit, f"{n} tokens: {size} bytes"
        drawn = read_output(view.html)
        T = len(view.result.tokens)
        assert T >= n
        assert drawn["attention"]["encoder"].shape == (6, 12, T, T)  # every head, at full resolution
        within_8_bits(drawn["attention"]["encoder"], view.result.analysis.patterns["encoder"])


def test_transformers_output_attentions_draw_the_same_numbers_as_our_model(hf_bert, minilm):
    model, tokenizer = hf_bert
    ids = tokenizer(SENTENCE)["input_ids"]
    with torch.no_grad():
        outputs = model(input_ids=torch.tensor([ids]), output_attentions=True)
    tokens = tokenizer.convert_ids_to_tokens(ids)
    special = tokenizer(SENTENCE, return_special_tokens_mask=True)["special_tokens_mask"]
    view = show(outputs.attentions, tokens, special=special)  # bertviz.head_view(attention, tokens)'s order
    assert isinstance(view, View) and view.result.model == ARRAYS
    ours = minilm.analyze(SENTENCE)
    assert [bool(s) for s in special] == ours.special
    assert tokens == ours.tokens
    drawn = read_output(view.html)
    assert drawn["tokens"] == tokens and drawn["layout"] == {"self": {"rows": "tokens", "columns": "tokens", "causal": False}}
    # our encoder and transformers agree to ~1e-6, then the page's 8-bit bytes
    within_8_bits(drawn["attention"]["self"], ours.patterns["encoder"], extra=1e-5)
    # the head table has the same metrics as our model's (from headscope/analyses/heads.py, on transformers' arrays, with
    # the same special tokens marked: the metrics leave them out)
    for theirs, mine in zip(drawn["heads"]["self"], summarize_heads(ours)["encoder"], strict=True):
        assert theirs["name"] == mine["name"]
        for name in METRICS:
            a, b = theirs["metrics"][name], mine["metrics"][name]
            assert (a is None and b is None) or math.isclose(a, b, abs_tol=1e-4), (theirs["name"], name, a, b)
    # by keyword, too
    assert read_output(show(attention=outputs.attentions, tokens=tokens).html)["tokens"] == tokens


def softmax_pattern(L=2, H=3, T=5, causal=False, seed=0) -> torch.Tensor:
    scores = torch.randn(L, H, T, T, generator=torch.Generator().manual_seed(seed))  # (L, H, T, T)
    if causal:
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(-1)


def test_every_form_libraries_hand_out_gives_the_same_pattern():
    pattern = softmax_pattern()  # (L, H, T, T)
    batched = torch.stack([pattern, softmax_pattern(seed=1)], dim=1)  # (L, B, H, T, T), batch 0 is `pattern`
    forms = {
        "transformers output_attentions: per layer (B, H, T, T)": tuple(batched.unbind(0)),
        "TransformerLens cache['pattern', l]: per layer (B, H, T, T) in a list": list(batched.unbind(0)),
        "TransformerLens cache['pattern', l][0]: per layer (H, T, T)": [p for p in pattern],
        "stack_activation('pattern'): (L, B, H, T, T)": batched,
        "numpy (L, H, T, T)": pattern.numpy(),
        "float16 tensor": pattern.half(),
    }
    for name, form in forms.items():
        torch.testing.assert_close(to_pattern(form), pattern, atol=1e-3 if "16" in name else 0, rtol=0, msg=name)


def test_causal_arrays_are_recognised_and_measured_as_causal():
    pattern = softmax_pattern(causal=True)
    tokens = ["a", "b", "a", "b", "."]
    result = from_attention(pattern, tokens)
    assert result.layout == {"self": SELF.__class__("tokens", "tokens", causal=True)}
    assert all(r["metrics"]["next_token"] is None for r in result.heads["self"])  # the next key is hidden
    assert not from_attention(softmax_pattern(), tokens).layout["self"].causal
    assert from_attention(pattern, tokens, causal=False).heads["self"][0]["metrics"]["next_token"] == 0.0
    with pytest.raises(ValueError, match="causal=True but the attention has weight above the diagonal"):
        from_attention(softmax_pattern(), tokens, causal=True)


def test_an_encoder_decoder_is_drawn_with_its_three_layouts(dates):
    analysis = dates.analyze("march 3, 1999")
    p = analysis.patterns
    view = show(encoder_attention=p["encoder"], decoder_attention=p["decoder"], cross_attention=p["cross"],
                encoder_tokens=analysis.tokens, decoder_tokens=analysis.output_tokens)
    assert view.result.layout == {"encoder": SELF, "decoder": DECODER_SELF, "cross": CROSS}
    drawn = read_output(view.html)
    assert drawn["tokens"] == analysis.tokens and drawn["output_tokens"] == analysis.output_tokens
    for kind in ("encoder", "decoder", "cross"):
        within_8_bits(drawn["attention"][kind], p[kind])
    # arrays come without special flags (the metrics leave special tokens out only where they are marked)
    unmarked = dataclasses.replace(analysis, special=[False] * len(analysis.tokens),
                                   output_special=[False] * len(analysis.output_tokens))
    assert view.result.heads == summarize_heads(unmarked)


@pytest.mark.parametrize("call, error, match", [
    (lambda: show(softmax_pattern(), ["a", "b"]), ValueError, "tokens has 2 tokens but the attention has 5"),
    (lambda: show(softmax_pattern()), ValueError, "tokens is missing"),
    (lambda: show(-softmax_pattern(), list("abcde")), ValueError, "negative, NaN or infinite"),
    (lambda: show(torch.ones(3, 4, 4), list("abcd")), ValueError, r"has shape \(3, 4, 4\)"),
    (lambda: show(torch.ones(1, 1, 3, 4), list("abcd")), ValueError, "as many queries as keys"),
    (lambda: show([torch.ones(1, 2, 3, 3), torch.ones(1, 2, 4, 4)], list("abc")), ValueError, r"attention\[1\] has shape"),
    (lambda: show(SENTENCE, tokens=["x"]), TypeError, "not both"),
    (lambda: show(SENTENCE, causal=True), TypeError, "not both"),
    (lambda: show((None, None), list("ab")), ValueError, r"attention\[0\] is None: .*attn_implementation='eager'"),
    (lambda: show(softmax_pattern(), list("abcde"), attention=softmax_pattern()), TypeError, "given twice"),
    (lambda: show(softmax_pattern(), list("abcde"), special=[True]), ValueError, "special has 1 flags for 5 tokens"),
    (lambda: show(), TypeError, "no attention given"),
    (lambda: show(SENTENCE, model=42), TypeError, "model must be"),
])
def test_bad_input_gets_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_the_example_notebook_is_committed_without_outputs_and_its_cells_parse():
    import ast

    import nbformat

    nb = nbformat.read(ROOT / "docs" / "notebook.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
    for cell in code:
        ast.parse(cell.source)
    assert any("show(outputs.attentions, tokens)" in cell.source for cell in code)


HOSTILE = ["</script><script>window.pwned=1</script>", "<img src=x onerror=window.pwned=2>", "<!--", "&amp;", "]]>"]


def test_hostile_token_text_never_reaches_the_html_as_markup(minilm):
    result = from_attention(softmax_pattern(T=len(HOSTILE)), HOSTILE)
    html = render(result)
    for token in HOSTILE:
        assert token not in html
    assert html.count("<script") == 2  # the data element and the one script, nothing a token opened
    assert read_output(html)["tokens"] == HOSTILE  # and they come back intact
    # the JSON escaping itself: nothing in it can close or open an element
    assert set("<>&") & set(script_json({"t": HOSTILE})) == set()
    page = render(analyze(" ".join(HOSTILE), minilm), page=True)  # the page's <title> is made of the text
    assert "<img" not in page and "</script><script>" not in page


def test_two_outputs_of_one_result_have_their_own_ids():
    result = from_attention(softmax_pattern(), list("abcde"))
    ids = [re.search(r'class="hs-nb" id="(hs-[0-9a-f]{32})"', render(result))[1] for _ in range(2)]
    assert ids[0] != ids[1]


# ---- in Chromium: saved pages and a real executed notebook ----------------------------------------

BLANK_CANVASES = """root => [...root.querySelectorAll('canvas.head')].filter(c => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 0; i < d.length; i += 4) if (d[i] < 200) return false;
    return true; }).length"""


def open_offline(browser, path: Path):
    """A page on the file, with every request that is not the file itself (or data:/blob:) recorded
    and refused: an output that needs the network would show it here."""
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    page = context.new_page()
    url = path.resolve().as_uri()
    page.outside = []
    page.errors = []

    def route(r):
        if r.request.url == url or r.request.url.startswith(("data:", "blob:")):
            r.continue_()
        else:
            page.outside.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page.on("request", lambda r: r.url in (url,) or r.url.startswith(("data:", "blob:")) or page.outside.append(r.url))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.goto(url)
    return page


@pytest.mark.browser
def test_hostile_tokens_show_literally_in_a_saved_page(browser, tmp_path):
    view = show(softmax_pattern(L=1, H=2, T=len(HOSTILE)), HOSTILE)
    page = open_offline(browser, view.save(tmp_path / "hostile.html"))
    try:
        page.wait_for_selector(".hs-nb[data-state=ready]", timeout=30_000)
        assert page.evaluate("window.pwned") is None
        assert page.locator(".hs-nb img").count() == 0
        page.click('canvas.head[data-layer="0"][data-head="1"]')
        heatmap = page.locator("canvas.hs-heatmap")
        box = heatmap.bounding_box()
        geometry = {k: float(heatmap.get_attribute(f"data-{k}")) for k in ("left", "top", "cell")}
        for i, j in ((0, 1), (2, 4)):  # hover cell (query i, key j): its tokens, literally, and its value
            page.mouse.move(box["x"] + geometry["left"] + (j + 0.5) * geometry["cell"],
                            box["y"] + geometry["top"] + (i + 0.5) * geometry["cell"])
            tip = page.locator(".hs-tip").text_content()
            assert tip.startswith(f"{HOSTILE[i]} → {HOSTILE[j]}: "), tip
            value = float(tip.rsplit(": ", 1)[1])
            head = view.result.attention["self"][0, 1]
            assert value == pytest.approx(head[i, j], abs=float(head.max()) / 510 + 5e-4)  # 8 bits, then 3 decimals
        assert page.outside == [] and page.errors == []
    finally:
        page.context.close()


NOTEBOOK_CELLS = [
    # the kernel must import this worktree's code, whatever else is installed
    f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nimport headscope\nassert headscope.__file__.startswith({str(ROOT)!r}), headscope.__file__",
    f"from headscope.notebook import show\nshow({SENTENCE!r})",
    # transformers-style arrays: a tuple with one (batch, head, query_pos, key_pos) tensor per layer
    # (the real transformers BertModel's are checked against our model in the tests above)
    "from headscope.notebook.show import get_model\n"
    f"analysis = get_model('minilm').analyze({SENTENCE!r})\n"
    "attentions = tuple(layer[None] for layer in analysis.patterns['encoder'])\n"
    "show(attentions, analysis.tokens)",
]


@pytest.fixture(scope="module")
def exported_notebook(tmp_path_factory):
    """Execute the notebook in a real kernel, save it, read it back, export it with nbconvert."""
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    folder = tmp_path_factory.mktemp("notebook")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in NOTEBOOK_CELLS])
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    saved = folder / "headscope.ipynb"
    nbformat.write(nb, saved)
    nb = nbformat.read(saved, as_version=4)  # what a reopened notebook holds: no kernel, no state
    # nbconvert's own page template loads require.js and MathJax from a CDN; that is its page, not our
    # output, so point those at empty data: scripts and let every remaining request count against us.
    empty = "data:text/javascript,"
    exporter = HTMLExporter(require_js_url=empty, mathjax_url=empty, mermaid_js_url=empty, mermaid_layout_elk_js_url=empty)
    html, _ = exporter.from_notebook_node(nb)
    exported = folder / "headscope.html"
    exported.write_text(html, encoding="utf-8")
    return nb, exported


@pytest.mark.browser
def test_a_notebook_executed_saved_and_exported_draws_every_head_offline(exported_notebook, browser):
    nb, exported = exported_notebook
    outputs = [cell.outputs for cell in nb.cells]
    for cell_outputs in outputs[1:]:  # both show(...) cells answered with one displayable HTML output
        (output,) = [o for o in cell_outputs if o.output_type == "execute_result"]
        assert {"text/html", "text/plain"} <= set(output.data)
    page = open_offline(browser, exported)
    try:
        page.wait_for_selector(".hs-nb[data-state=ready] >> nth=1", timeout=60_000)
        roots = page.locator(".hs-nb")
        assert roots.count() == 2
        assert len({roots.nth(i).get_attribute("id") for i in range(2)}) == 2
        for i, kind in enumerate(("encoder", "self")):  # our model's text, then transformers' arrays
            root = roots.nth(i)
            assert root.get_attribute("data-state") == "ready"
            heads = root.locator(f'canvas.head[data-kind="{kind}"]')
            assert heads.count() == 72
            names = {(int(c.get_attribute("data-layer")), int(c.get_attribute("data-head"))) for c in heads.all()}
            assert names == {(l, h) for l in range(6) for h in range(12)}
            assert root.evaluate(BLANK_CANVASES) == 0  # every thumbnail painted

        # click a head of the second output: its detail opens there, drawn, and only there
        second = roots.nth(1)
        second.locator('canvas.head[data-layer="2"][data-head="5"]').click()
        heatmap = second.locator('canvas.hs-heatmap[data-kind="self"][data-layer="2"][data-head="5"]')
        heatmap.wait_for(state="visible")
        assert second.locator(".hs-bar h4").text_content() == "L2H5 · self"
        assert heatmap.evaluate("""c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let dark = 0; for (let i = 0; i < d.length; i += 4) if (d[i] < 100) dark++; return dark; }""") > 100
        assert roots.nth(0).locator(".hs-detail").is_hidden()
        second.get_by_role("button", name="next head").click()
        assert second.locator(".hs-bar h4").text_content() == "L2H6 · self"
        second.locator("canvas.hs-heatmap").focus()
        page.keyboard.press("ArrowDown")
        assert second.locator(".hs-bar h4").text_content() == "L3H6 · self"
        # the head table: one row per head, opening the head it names
        second.locator("summary").click()
        assert second.locator('tr[data-kind="self"]').count() == 72
        second.locator('tr[data-kind="self"][data-layer="4"][data-head="0"]').click()
        assert second.locator(".hs-bar h4").text_content() == "L4H0 · self"

        assert page.outside == [], page.outside
        assert page.errors == [], page.errors
    finally:
        page.context.close()


@pytest.fixture(scope="module")
def digit_file(tmp_path_factory):
    """A held-out '0' of scikit-learn's digits as a PNG, and its pixels decoded by Pillow and numpy."""
    import io

    from PIL import Image

    from headscope.models.digits import load_images

    images, labels = load_images()
    path = tmp_path_factory.mktemp("digits") / "zero.png"
    Image.fromarray(np.round(images[0].numpy() * 255).astype(np.uint8), "L").save(path)
    pixels = np.asarray(Image.open(io.BytesIO(path.read_bytes())).convert("RGB"), dtype=np.float32) / 255
    return path, torch.from_numpy(pixels), str(int(labels[0]))


def test_an_image_model_is_analyzed_from_a_file_bytes_pil_or_pixels(digit_file):
    from PIL import Image

    from headscope.models.digits import DigitsModel

    path, pixels, label = digit_file
    want = DigitsModel.load().analyze_image(pixels)
    forms = [path, str(path), path.read_bytes(), Image.open(path), np.asarray(Image.open(path)), pixels]
    for form in forms:
        result = analyze(image=form, model="digits")
        np.testing.assert_allclose(result.attention["encoder"], want.patterns["encoder"].numpy(), atol=1e-6)
        assert result.tokens == want.tokens and result.text is None
        assert result.analysis.image["prediction"] == label == want.image["prediction"]
        assert result.layout["encoder"].rows == "patches"
    with pytest.raises(ValueError, match="digits takes an image"):
        analyze(model="digits")
    with pytest.raises(TypeError, match="not both"):
        analyze("The cat sat.", model="digits", image=path)
    with pytest.raises(ValueError, match="minilm takes a text, not an image"):
        analyze(image=path, model="minilm")


def test_show_draws_an_image_models_heads_with_the_patch_names_as_tokens(digit_file, browser, tmp_path):
    """What show() draws for a text model, for the digits ViT: every head, the detail view with the positions'
    names ("[CLS]", "r0c0" ...) on hover, the weights within 8 bits of a direct run, no console error."""
    path, pixels, _ = digit_file
    view = show(image=path, model="digits")
    embedded = read_output(view.html)
    assert embedded["tokens"][:2] == ["[CLS]", "r0c0"] and embedded["image"]["patch_grid"] == [4, 4]
    within_8_bits(embedded["attention"]["encoder"], torch.from_numpy(view.result.attention["encoder"]))
    page = open_offline(browser, view.save(tmp_path / "digits.html"))
    try:
        page.wait_for_selector(".hs-nb[data-state=ready]", timeout=30_000)
        assert page.locator("canvas.head").count() == 3 * 4
        page.click('canvas.head[data-layer="2"][data-head="1"]')
        heatmap = page.locator("canvas.hs-heatmap")
        box = heatmap.bounding_box()
        geometry = {k: float(heatmap.get_attribute(f"data-{k}")) for k in ("left", "top", "cell")}
        tokens = view.result.tokens
        for i, j in ((0, 1), (0, 16), (5, 0)):  # the class token's row, a patch's row
            page.mouse.move(box["x"] + geometry["left"] + (j + 0.5) * geometry["cell"],
                            box["y"] + geometry["top"] + (i + 0.5) * geometry["cell"])
            tip = page.locator(".hs-tip").text_content()
            assert tip.startswith(f"{tokens[i]} → {tokens[j]}: "), tip
            head = view.result.attention["encoder"][2, 1]
            assert float(tip.rsplit(": ", 1)[1]) == pytest.approx(head[i, j], abs=float(head.max()) / 510 + 5e-4)
        assert page.outside == [] and page.errors == []
    finally:
        page.context.close()
