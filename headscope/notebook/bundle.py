"""Join the page's ES modules into one classic script, for places where `import` cannot resolve.

A notebook output (Jupyter, JupyterLab, VS Code, an nbconvert HTML file) has no server to fetch
`./grid.js` from, and a module loaded from a data: or blob: URL cannot import its relative
neighbours either. So the modules are joined, each in its own function scope, in dependency order:

    // grid.js                                   const m_grid = (() => {
    import { make } from './dom.js';     ->        'use strict';
    export function drawGrids(...) {...}           const { make } = m_dom;
                                                   function drawGrids(...) {...}
                                                   return { drawGrids };
                                                 })();

Each module keeps its own top-level names (two modules may both have a `ids` or `label`), and
runs once, before the modules that import it, as the browser would run them. Only the two forms
our modules use are understood, each on one line:
    import { a, b as c } from './x.js';
    export function | async function | const | class NAME
(no `export let`: an imported `let` would be copied once, where a module's binding stays live).
Any other `import` or `export` line raises ValueError, so a module written another way fails in
the tests instead of silently breaking the notebook. The result is a list of statements: wrap it
in a function or block before putting it in a page twice (its `const`s would clash).
"""

import re
from pathlib import Path

IMPORT = re.compile(r"^import \{([^}]*)\} from '\./([\w-]+)\.js';\s*$")
EXPORT = re.compile(r"^export (?:async )?(?:function\*?|const|class) ([\w$]+)")
ANY_MODULE_SYNTAX = re.compile(r"^\s*(import|export)\b")


def module_var(name: str) -> str:
    """The variable holding a module's exports: grid.js -> m_grid."""
    return "m_" + name.replace("-", "_")


def parse_module(source: str, name: str) -> tuple[list[tuple[str, str, str]], list[str], list[str]]:
    """(imports as (module, imported name, local name), exported names, body lines without the syntax)."""
    imports, exports, body = [], [], []
    for number, line in enumerate(source.splitlines(), 1):
        if m := IMPORT.match(line):
            for item in filter(None, (part.strip() for part in m[1].split(","))):
                imported, _, local = item.partition(" as ")
                imports.append((m[2], imported.strip(), (local or imported).strip()))
            body.append("")  # keep line numbers of the rest the same, for error messages
        elif m := EXPORT.match(line):
            exports.append(m[1])
            body.append(line[len("export "):])
        elif ANY_MODULE_SYNTAX.match(line):
            raise ValueError(f"{name}.js line {number}: only `import {{ ... }} from './x.js';` and "
                             f"`export function/const/class NAME` can be bundled: {line.strip()!r}")
        else:
            body.append(line)
    return imports, exports, body


def bundle(entry: str, folder: Path) -> str:
    """Every module `entry` (a name such as "notebook", for notebook.js) needs from `folder`,
    joined into one script; the entry's exports end up in `m_<entry>`."""
    order: list[str] = []
    parsed: dict[str, tuple] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise ValueError(f"import cycle: {' -> '.join(path + (name,))}")
        if name in parsed:
            return
        parsed[name] = parse_module((folder / f"{name}.js").read_text(encoding="utf-8"), name)
        for dependency, _, _ in parsed[name][0]:
            visit(dependency, path + (name,))
        order.append(name)  # after everything it imports

    visit(entry, ())
    parts = []
    for name in order:
        imports, exports, body = parsed[name]
        for dependency, imported, _ in imports:
            if imported not in parsed[dependency][1]:
                raise ValueError(f"{name}.js imports {imported} from {dependency}.js, which does not export it")
        header = [f"const {local} = {module_var(dep)}.{imported};" for dep, imported, local in imports]
        parts.append("\n".join([
            f"// ---- {name}.js",
            f"const {module_var(name)} = (() => {{",
            "'use strict';",
            *header,
            *body,
            f"return {{ {', '.join(exports)} }};",
            "})();",
        ]))
    return "\n".join(parts) + "\n"
