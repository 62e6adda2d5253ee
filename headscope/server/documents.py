"""The documents the page links to: docs/NAME.md, served as an HTML page (/docs/NAME.html) and as its Markdown
source (/docs/NAME.md), the twins of one file.

Rendering is markdown-it-py's CommonMark with tables. Raw HTML in a document is shown as text (`html: False`),
so a page can never carry a script or a style. A link to another linked document (`metrics.md#roles`) becomes a
link to its HTML page; a picture that only the repository has (the wheel carries docs/*.md, not the screenshots)
is named in words instead of drawn as a broken image.
"""

from functools import lru_cache
from html import escape
from pathlib import Path

from markdown_it import MarkdownIt

from headscope.server.files import docs_dir

# NAME -> what it holds: the page's links, each document's list of the others, and the only names served.
LINKED_DOCS = {
    "metrics": "the formulas of every metric and role",
    "ablation": "what zero and mean ablation do, and each effect measure",
    "importance": "the measures and formulas of head importance",
    "probes": "the probes' file format and formulas",
    "patching": "activation patching and direct logit attribution: the method, the metrics, the normalisation",
    "detect": "how previous-token, duplicate-token and induction heads are found, on which inputs",
    "one-head-or-many": "the one head or many study: method, numbers, and what they do and do not support",
}


def html_path(name: str) -> str:
    return f"/docs/{name}.html"


def linked(name: str) -> str:
    """The page's link to linked document NAME; a name that is not one is an error when the page is rendered."""
    if name not in LINKED_DOCS:
        raise KeyError(f"{name!r} is not a linked document (documents.LINKED_DOCS)")
    return html_path(name)


def markdown_path(name: str) -> str:
    return f"/docs/{name}.md"


def source(name: str) -> Path:
    """docs/NAME.md of a linked document (the caller has checked `name in LINKED_DOCS`)."""
    return docs_dir() / f"{name}.md"


def _link_target(href: str) -> str:
    """A document's own link, as the HTML page should have it: `X.md[#frag]` of a linked X -> /docs/X.html[#frag]."""
    path, hash_, fragment = href.partition("#")
    name = Path(path).name.removesuffix(".md") if path.endswith(".md") and "://" not in path else None
    if name in LINKED_DOCS:
        return html_path(name) + hash_ + fragment
    return href


def _renderer() -> MarkdownIt:
    """CommonMark with tables, no raw HTML; our links and pictures (module docstring)."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")

    def link_open(renderer, tokens, idx, options, env):
        token = tokens[idx]
        token.attrSet("href", _link_target(token.attrGet("href") or ""))
        return renderer.renderToken(tokens, idx, options, env)

    def image(renderer, tokens, idx, options, env):
        token = tokens[idx]
        alt = "".join(child.content for child in token.children or [])
        src = token.attrGet("src") or ""
        return (f'<span class="doc-figure">[Figure: {escape(alt)} — docs/{escape(src)} in the repository; '
                "not part of the installed package]</span>")

    md.add_render_rule("link_open", link_open)
    md.add_render_rule("image", image)
    return md


RENDERER = _renderer()


def render_markdown(text: str) -> str:
    """One document's Markdown as HTML (the module docstring says what is kept and what changes)."""
    return RENDERER.render(text)


@lru_cache(maxsize=len(LINKED_DOCS))
def _render(name: str, mtime_ns: int) -> tuple[str, str]:
    text = source(name).read_text(encoding="utf-8")
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), name)
    return title, render_markdown(text)


def rendered(name: str) -> tuple[str, str]:
    """(title, body HTML) of linked document NAME: its first `# ` heading and its Markdown rendered (cached until
    the file changes)."""
    return _render(name, source(name).stat().st_mtime_ns)
