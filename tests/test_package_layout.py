"""The package is laid out by job, and imports run one way: data <- models <- analyses <- corpus <- server <- cli,
notebook. Training code is imported by nothing that serves; no module but the app factory imports a route."""

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "headscope"
LAYERS = {"data": 0, "models": 1, "analyses": 2, "corpus": 3, "training": 3, "server": 4, "cli": 5, "notebook": 5}
SERVES = ("models", "analyses", "corpus", "server", "cli", "notebook")  # never import training
MOST_FILES = 14  # modules per folder: "about a dozen"


def modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path) -> set[str]:
    """Every headscope module a file imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("headscope"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("headscope")}
    return found & set(modules()) | {m for m in found if m.startswith("headscope.") and m.count(".") == 1}


def folder(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else None


def test_every_folder_is_a_known_job():
    folders = {p.parent.relative_to(PACKAGE).parts[0] for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE}
    assert folders <= set(LAYERS), folders - set(LAYERS)


def test_imports_only_run_downwards_and_training_is_not_served():
    wrong = []
    for name, path in modules().items():
        own = folder(name)
        if own is None:
            continue
        for target in imports(path):
            other = folder(target)
            if other is None or other == own:
                continue
            if LAYERS[other] > LAYERS[own] or (other == "training" and own in SERVES) or \
                    (own == "training" and other in ("server", "cli", "notebook")):
                wrong.append(f"{name} imports {target}")
    assert wrong == []


def test_no_two_folders_import_each_other():
    edges = defaultdict(set)
    for name, path in modules().items():
        for target in imports(path):
            a, b = folder(name), folder(target)
            if a and b and a != b:
                edges[a].add(b)
    assert [(a, b) for a in edges for b in edges[a] if a in edges.get(b, ())] == []


def test_only_the_app_factory_imports_the_routes():
    routes = {m for m in modules() if m.startswith("headscope.server.routes.")}
    importers = {name for name, path in modules().items() if imports(path) & routes}
    assert importers <= {"headscope.server.app"}, importers


def test_no_folder_holds_more_than_about_a_dozen_modules():
    sizes = defaultdict(int)
    for path in PACKAGE.rglob("*.py"):
        if path.name != "__init__.py":
            sizes[path.parent.relative_to(PACKAGE.parent).as_posix()] += 1
    assert {f: n for f, n in sizes.items() if n > MOST_FILES} == {}


def test_the_check_sees_a_wrong_import(tmp_path, monkeypatch):
    """An import from a higher folder is caught: the test above can fail."""
    source = "from headscope.server.answers import attention_body\n"
    path = tmp_path / "x.py"
    path.write_text(source)
    assert "headscope.server.answers" in imports(path)
    assert LAYERS[folder("headscope.server.answers")] > LAYERS[folder("headscope.models.adapter")]
