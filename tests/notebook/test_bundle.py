"""headscope/notebook/bundle.py: ES modules joined into one classic script, run in real Chromium."""

import pytest

from headscope.notebook.bundle import bundle, parse_module
from headscope.server.files import JS_LIB


def write(folder, **modules):
    for name, source in modules.items():
        (folder / f"{name}.js").write_text(source)
    return folder


def run(browser, source: str, expression: str):
    """Evaluate `source` then `expression` inside one async function, in a blank Chromium page."""
    page = browser.new_page()
    try:
        return page.evaluate(f"async () => {{\n{source}\nreturn {expression};\n}}")
    finally:
        page.close()


@pytest.mark.browser
def test_joined_modules_run_in_dependency_order_with_their_own_scopes(tmp_path, browser):
    write(
        tmp_path,
        # both `ids` and `label` exist in two modules; as modules they never clash, nor here
        base="const ids = ['base'];\nexport const log = [];\nexport function label(x) { return `<${x}>`; }\nlog.push('base');\n",
        middle="import { label, log } from './base.js';\nconst ids = ['middle'];\nlog.push('middle');\n"
               "export function twice(x) { return label(x) + label(x); }\nexport class Box { constructor(v) { this.v = v; } }\n",
        main="import { twice as double, Box } from './middle.js';\nimport { log } from './base.js';\nlog.push('main');\n"
             "export async function go() { return double(new Box(2).v); }\nfunction label() { return 'main'; }\n"
             "export const seen = log;\n",
    )
    source = bundle("main", tmp_path)
    out = run(browser, source, "{ seen: m_main.seen, go: await m_main.go(), keys: Object.keys(m_main).sort() }")
    assert out["seen"] == ["base", "middle", "main"]  # each module once, after what it imports
    assert out["go"] == "<2><2>"  # an aliased import, a class, an async export
    assert out["keys"] == ["go", "seen"]  # only what main exports
    assert source.index("// ---- base.js") < source.index("// ---- middle.js") < source.index("// ---- main.js")
    assert "import " not in source and "export " not in source


@pytest.mark.parametrize("line", [
    "export default function f() {}",
    "import * as dom from './dom.js';",
    "import { a } from '../up.js';",
    "export { a, b };",
    "export let counter = 0;",  # an imported `let` would not stay live
    "import './side-effect.js';",
])
def test_forms_it_cannot_join_are_refused_not_mangled(line):
    with pytest.raises(ValueError, match="line 2"):
        parse_module(f"const a = 1, b = 2;\n{line}\n", "x")


def test_an_import_of_a_name_that_is_not_exported_is_refused(tmp_path):
    write(tmp_path, a="export function f() {}\n", b="import { g } from './a.js';\n")
    with pytest.raises(ValueError, match="imports g from a.js"):
        bundle("b", tmp_path)


def test_an_import_cycle_is_refused(tmp_path):
    write(tmp_path, a="import { g } from './b.js';\nexport function f() {}\n",
          b="import { f } from './a.js';\nexport function g() {}\n")
    with pytest.raises(ValueError, match="import cycle: a -> b -> a"):
        bundle("a", tmp_path)


def test_the_notebook_script_uses_the_pages_own_modules_and_not_plotly():
    source = bundle("notebook", JS_LIB)
    joined = [line.removeprefix("// ---- ") for line in source.splitlines() if line.startswith("// ---- ")]
    for module in ("dom.js", "colors.js", "views.js", "grid.js", "api.js", "canvasmap.js"):
        assert module in joined
    assert joined[-1] == "notebook.js"
    assert joined.index("views.js") < joined.index("grid.js")  # grid.js imports views.js
    assert "heatmap.js" not in joined and "main.js" not in joined  # no Plotly loader, no page wiring
    # the page's functions come from its files, not from a copy
    assert (JS_LIB / "views.js").read_text().split("export function makeView")[1][:400] in source
