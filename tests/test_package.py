"""Headscope as a package: every package it imports is declared, and its wheel, installed into a fresh virtual
environment, serves the whole page from any folder (one holding its own model.py and app.py included)."""

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import time
import tomllib
import urllib.request
import zipfile
from pathlib import Path
from urllib.parse import urljoin

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

# Declared but never imported by name, each for a reason.
USED_WITHOUT_IMPORT = {
    "ipykernel": "the `python3` kernel that tests/notebook runs its notebook in",
    "accelerate": "transformers refuses to load a GGUF file without it (headscope/models/hf/gguf.py)",
    "uvicorn": "imported, but declared as uvicorn[standard]: uvloop and httptools, which uvicorn picks itself",
}


def declared(group: str | None = None) -> set[str]:
    """Canonical names of the distributions pyproject.toml declares: the dependencies, or an extra's."""
    project = PYPROJECT["project"]
    lines = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return {canonicalize_name(Requirement(line).name) for line in lines}


def imported(folder: Path) -> dict[str, set[str]]:
    """Top-level names of the third-party modules the .py files under folder import -> the files importing them."""
    names: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top not in {"headscope", "tests", "bench"}:
                    names.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return names


def distributions(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    """The installed distributions that provide those modules -> the files importing them."""
    providers = importlib.metadata.packages_distributions()
    out: dict[str, set[str]] = {}
    for module, files in modules.items():
        assert module in providers, f"{module} (imported by {sorted(files)}) is not installed"
        for dist in providers[module]:
            out.setdefault(canonicalize_name(dist), set()).update(files)
    return out


def test_every_package_the_code_imports_is_declared():
    """What headscope/ imports is a dependency (the Ray engine's imports: the `ray` extra); what tests/ and bench/
    import is a dependency or in the `test` extra."""
    runtime = declared()
    package = distributions(imported(ROOT / "headscope"))
    ray_only = {dist for dist, files in package.items() if files == {"headscope/corpus/ray.py"}}
    missing = {dist: sorted(files) for dist, files in package.items()
               if dist not in runtime and not (dist in ray_only and dist in declared("ray"))}
    assert not missing, f"imported but not declared in [project] dependencies: {missing}"
    for folder in ("tests", "bench"):
        used = distributions(imported(ROOT / folder))
        missing = {dist: sorted(files) for dist, files in used.items()
                   if dist not in runtime | declared("test") | declared("ray")}
        assert not missing, f"{folder}/ imports what nothing declares: {missing}"


def test_every_declared_package_is_used():
    """No dependency or extra that nothing imports (USED_WITHOUT_IMPORT says why the exceptions are there)."""
    used = set()
    for folder in ("headscope", "tests", "bench"):
        used |= set(distributions(imported(ROOT / folder)))
    for group in (None, *PYPROJECT["project"]["optional-dependencies"]):
        unused = declared(group) - used - set(USED_WITHOUT_IMPORT)
        assert not unused, f"declared in {group or 'dependencies'} but imported nowhere: {sorted(unused)}"


# --- the wheel ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(ROOT)],
                   check=True, capture_output=True, text=True)
    (built,) = out.glob("headscope-*.whl")
    return built


def test_the_wheel_holds_one_import_name_and_the_pages_files(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"headscope"}  # no top-level app or model
    for part in ("headscope/server/templates/index.html", "headscope/server/static/style.css",
                 "headscope/server/static/js/main.js", "headscope/data/probe_sets/", "headscope/data/weights/",
                 "headscope/docs/metrics.md"):
        assert any(name.startswith(part) for name in names), f"the wheel lacks {part}"
    assert not [name for name in names if "__pycache__" in name or name.endswith((".png", ".ipynb"))]


@pytest.fixture(scope="module")
def fresh(wheel, tmp_path_factory) -> Path:
    """A new virtual environment with only the wheel (and what it declares) installed: its python."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], check=True, capture_output=True,
                   text=True, timeout=900)
    return python


@pytest.fixture(scope="module")
def stranger(tmp_path_factory) -> Path:
    """A student's project folder, with its own model.py and app.py that fail loudly if imported."""
    folder = tmp_path_factory.mktemp("project")
    for name in ("model.py", "app.py"):
        (folder / name).write_text(f"raise SystemExit('the folder\\'s own {name} was imported')\n")
    return folder


def clean_env() -> dict:
    return {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}


def test_the_installed_package_imports_from_any_folder(fresh, stranger):
    script = ("import json, importlib.util, headscope, headscope.notebook; "
              "print(json.dumps({'file': headscope.__file__, 'show': callable(headscope.notebook.show), "
              "'app': importlib.util.find_spec('app').origin, 'model': importlib.util.find_spec('model').origin}))")
    done = subprocess.run([str(fresh), "-c", script], cwd=stranger, env=clean_env(), capture_output=True, text=True,
                          check=True)
    found = json.loads(done.stdout)
    assert Path(found["file"]).is_relative_to(fresh.parent.parent)  # the wheel's, not the checkout's
    assert found["show"]
    # the only app and model are the folder's own: nothing installed takes those names
    assert found["app"] == str(stranger / "app.py") and found["model"] == str(stranger / "model.py")


def fetch(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=60) as answer:
        return answer.status, answer.headers.get("content-type", ""), answer.read()


def test_the_installed_package_serves_the_whole_page(fresh, stranger):
    """From the student's folder: the page, every script it loads (followed through their imports), every
    document it links to, the probe example sets and an answer."""
    log = stranger / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen([str(fresh.parent / "headscope"), "serve", "--model", "minilm", "--port", "0"],
                                  cwd=stranger, env=clean_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        base = None
        for _ in range(600):  # up to a minute to load the model
            if match := re.search(r"open (http://[\d.:]+)/", log.read_text()):
                base = match.group(1)
                break
            assert server.poll() is None, log.read_text()
            time.sleep(0.1)
        assert base, f"the server never said where it listens: {log.read_text()}"
        status, kind, body = fetch(base + "/")
        page = body.decode()
        assert status == 200 and "text/html" in kind
        scripts = [urljoin(base + "/", src) for src in re.findall(r'<script[^>]+src="([^"]+)"', page)]
        assert scripts
        seen: set[str] = set()
        while scripts:
            url = scripts.pop()
            if url in seen:
                continue
            seen.add(url)
            status, kind, body = fetch(url)
            assert status == 200 and "javascript" in kind, url
            for imported_path in re.findall(r"""(?:from|import)\s*\(?\s*['"]((?:\.\.?)?/[^'"]+)['"]""", body.decode()):
                scripts.append(urljoin(url, imported_path))
        assert len(seen) > 5  # main.js and the modules it imports
        docs = set(re.findall(r'href="/docs/([\w-]+)\.html"', page))
        assert docs
        for doc in docs:  # each document as a page, and its Markdown twin, from the installed package
            status, kind, body = fetch(f"{base}/docs/{doc}.html")
            assert status == 200 and "text/html" in kind and b'<main class="doc"' in body, doc
            status, kind, body = fetch(f"{base}/docs/{doc}.md")
            assert status == 200 and "markdown" in kind and body.startswith(b"#"), doc
        status, _, body = fetch(base + "/vendor/plotly.min.js")
        assert status == 200 and len(body) > 1_000_000
        info = json.loads(fetch(base + "/api/probe/info")[2])
        assert info["examples"] and all(example["pairs"].strip() for example in info["examples"])
        answer = json.loads(fetch(base + "/api/attention?text=The%20cat%20sat.&model=minilm")[2])
        assert answer["tokens"][:2] == ["[CLS]", "the"]
    finally:
        server.terminate()
        server.wait(timeout=30)
