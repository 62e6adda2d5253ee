"""The documents the page links to, rendered (headscope/server/documents.py): what the Markdown keeps and changes."""

import pytest

from headscope.server.documents import linked, render_markdown


def test_a_document_page_shows_raw_html_as_text_and_links_to_its_siblings_pages():
    html = render_markdown('<script>alert(1)</script>\n\nSee [roles](metrics.md#roles), [ours](./ablation.md), '
                           '[a file](../README.md) and [away](https://example.org/x.md).\n\n![a figure](grid.png)')
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'href="/docs/metrics.html#roles"' in html and 'href="/docs/ablation.html"' in html
    assert 'href="../README.md"' in html and 'href="https://example.org/x.md"' in html
    assert "<img" not in html and "a figure" in html and "docs/grid.png" in html



def test_the_page_can_link_only_to_a_document_it_serves():
    assert linked("metrics") == "/docs/metrics.html"
    with pytest.raises(KeyError, match="not a linked document"):
        linked("README")  # a template's typo fails when the page is rendered, not as a 404 a user finds
