"""Where the page's files are: templates, static scripts and styles, and the documents it serves.

All of them ship inside the package. The documents live in the repository's top-level docs/; a wheel
carries them as headscope/docs/ (pyproject.toml), an editable install reads them from the checkout.
"""

from pathlib import Path

SERVER = Path(__file__).resolve().parent
PACKAGE = SERVER.parent
TEMPLATES = SERVER / "templates"
STATIC = SERVER / "static"
JS = STATIC / "js"  # main.js (the page), lib/ (shared modules), tabs/ (one module per tab: headscope/server/tabs.py)
JS_LIB = JS / "lib"  # modules shared by the page and the notebook output (notebook.js and what it imports)


def docs_dir() -> Path:
    """The documents: inside the installed package (a wheel), else the checkout's docs/ (an editable install)."""
    packaged = PACKAGE / "docs"
    return packaged if packaged.is_dir() else PACKAGE.parent / "docs"
