"""The page's tabs come from one registry (headscope/server/tabs.py), and its config block from the server's own
constants: the nav, the sections, the modules the page loads and the `?tab=` values it accepts all follow from
TABS (shown by rendering a patched registry); an unknown tab or model is said on the page."""

import json
from html.parser import HTMLParser
from urllib.parse import urlparse

import pytest
from jinja2 import ChoiceLoader, DictLoader

from headscope.analyses.metrics import METRICS_ABOUT
from headscope.models.interventions import MODES
from headscope.server import documents, tabs
from headscope.server.answers import WEIGHTS
from headscope.server.errors import ErrorCode
from headscope.server.routes import pages
from headscope.server.settings import public_limits

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Html(HTMLParser):
    """Every element of a page as {tag, attrs, text (its descendants' too), parents (their ids)}, in order."""

    def __init__(self, html: str):
        super().__init__()
        self.elements, self.open = [], []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, "attrs": dict(attrs), "text": "", "parents": [e["attrs"].get("id") for e in self.open]}
        self.elements.append(element)
        if tag not in VOID:
            self.open.append(element)

    def handle_endtag(self, tag):
        while self.open and self.open.pop()["tag"] != tag:
            pass

    def handle_data(self, data):
        for element in self.open:
            element["text"] += data

    def find(self, tag=None, inside=None, **attrs):
        return [e for e in self.elements if (tag is None or e["tag"] == tag) and (inside is None or inside in e["parents"])
                and all(e["attrs"].get(k.replace("_", "-")) == v for k, v in attrs.items())]

    def by_id(self, id_):
        (element,) = self.find(id=id_)
        return element


def render(client, query: str = "") -> tuple[Html, dict]:
    r = client.get(f"/{query}")
    assert r.status_code == 200
    page = Html(r.text)
    return page, json.loads(page.by_id("page-config")["text"])


def nav(page):
    return [(b["attrs"]["data-tab"], b["text"].strip(), b["attrs"]["aria-selected"]) for b in page.find("button", inside="tabs")]


def notices(page):
    return [p["text"].strip() for p in page.find("p") if "data-notice" in p["attrs"]]


def sections(page):
    return [(s["attrs"]["id"], "hidden" in s["attrs"]) for s in page.find("section", inside=None) if "tab" in
            s["attrs"].get("class", "").split()]


def test_the_nav_the_sections_and_the_scripts_are_the_registrys(client):
    page, config = render(client)
    first = tabs.TABS[0].name
    assert nav(page) == [(t.name, t.label, "true" if t.name == first else "false") for t in tabs.TABS]
    assert sections(page) == [(f"tab-{t.name}", t.name != first) for t in tabs.TABS]
    assert [t["name"] for t in config["tabs"]] == [t.name for t in tabs.TABS] and config["tab"] == first
    # each tab's module runs before the page's own (module scripts run in document order)
    scripts = [s["attrs"]["src"] for s in page.find("script") if "src" in s["attrs"]]
    assert [src.split("/static/", 1)[1] for src in scripts] == [t.script for t in tabs.TABS] + ["js/main.js"]
    for tab, entry in zip(tabs.TABS, config["tabs"], strict=True):
        assert entry["script"] == f"/static/{tab.script}"
        r = client.get(entry["script"])
        assert r.status_code == 200 and "javascript" in r.headers["content-type"]
    # each section holds its partial: the partial's first element with an id is inside the right section
    for tab in tabs.TABS:
        inside = [e["attrs"]["id"] for e in page.find(inside=f"tab-{tab.name}") if "id" in e["attrs"]]
        assert inside, tab.name
        assert all(f"tab-{tab.name}" in page.by_id(i)["parents"] for i in inside)


def test_every_tab_document_is_served(client):
    for tab in tabs.TABS:
        if tab.docs:
            assert tab.docs in documents.LINKED_DOCS
            assert client.get(f"/docs/{tab.docs}.md").status_code == client.get(f"/docs/{tab.docs}.html").status_code == 200


@pytest.fixture
def extra_tab(monkeypatch):
    """The registry with one more tab (its partial given here), and without the probes tab."""
    extra = tabs.Tab("extra", "Extra things", template="tabs/extra-test.html", script="js/tabs/extra-test.js")
    registry = tuple(t for t in tabs.TABS if t.name != "probes")
    monkeypatch.setattr(tabs, "TABS", registry[:2] + (extra,) + registry[2:])
    loader = ChoiceLoader([DictLoader({"tabs/extra-test.html": '<p id="extra-body">Something else.</p>'}),
                           pages.templates.env.loader])
    monkeypatch.setattr(pages.templates.env, "loader", loader)
    return extra


def test_a_tab_added_to_the_registry_appears_in_the_nav_the_sections_and_the_config(client, extra_tab):
    page, config = render(client)
    assert [name for name, _, _ in nav(page)][:3] == [tabs.TABS[0].name, tabs.TABS[1].name, "extra"]
    assert ("extra", "Extra things", "false") in nav(page) and "probes" not in [n for n, _, _ in nav(page)]
    assert ("tab-extra", True) in sections(page) and "tab-probes" not in [s for s, _ in sections(page)]
    assert "tab-extra" in page.by_id("extra-body")["parents"] and page.find(id="probe-run") == []
    assert {"name": "extra", "label": "Extra things", "docs": None, "not_for_images": "",
            "script": "/static/js/tabs/extra-test.js"} in config["tabs"]
    assert "/static/js/tabs/extra-test.js" in [urlparse(s["attrs"]["src"]).path for s in page.find("script") if "src" in s["attrs"]]
    page, config = render(client, "?tab=extra")  # and the page accepts it
    assert config["tab"] == "extra" and ("tab-extra", False) in sections(page) and ("extra", "Extra things", "true") in nav(page)
    assert notices(page) == []
    page, config = render(client, "?tab=probes")  # a tab no longer in the registry is not accepted
    assert config["tab"] == tabs.TABS[0].name and "'probes'" in notices(page)[0]


def test_an_unknown_tab_or_model_is_said_on_the_page_and_the_default_shown(client, models):
    page, config = render(client, "?tab=nope&model=gpt-17&text=hi")
    said = notices(page)
    assert len(said) == 2
    assert "'nope'" in said[0] and all(f"tab={t.name}" in said[0] for t in tabs.TABS)
    assert "'gpt-17'" in said[1] and all(name in said[1] for name in models)
    first = next(iter(models))
    assert config["tab"] == tabs.TABS[0].name and config["model"] == first
    assert [o["attrs"]["value"] for o in page.find("option", inside="model") if "selected" in o["attrs"]] == [first]
    page, config = render(client, f"?tab={tabs.TABS[-1].name}&model={list(models)[-1]}")
    assert notices(page) == [] and config["tab"] == tabs.TABS[-1].name and config["model"] == list(models)[-1]
    page, config = render(client, "?tab=&model=")  # empty: the defaults, nothing to say
    assert notices(page) == [] and config["tab"] == tabs.TABS[0].name


def test_the_config_block_is_the_servers_own_constants(client, app):
    page, config = render(client)
    assert config["ablation"] == {"modes": list(MODES), "default": "zero"}
    assert [w["name"] for w in config["weights"]["kinds"]] == list(WEIGHTS) and config["weights"]["default"] == "attention"
    assert config["limits"] == public_limits(app.state.settings) == client.get("/api/models").json()["limits"]
    assert config["errors"] == {code.name: code.value for code in ErrorCode}
    assert config["metrics"] == METRICS_ABOUT == client.get("/api/models").json()["metrics"]
    # the controls that offer them are rendered from the same lists
    for select, values in (("opt-weights", WEIGHTS), ("ablation-mode", MODES), ("imp-ablation", MODES)):
        assert [o["attrs"]["value"] for o in page.find("option", inside=select)] == list(values)


def test_the_glossary_says_each_metrics_basis(client):
    page, _ = render(client)
    tags = [e["attrs"]["data-basis"] for e in page.find("span", inside="glossary") if "data-basis" in e["attrs"]]
    assert tags == [about["basis"] for about in METRICS_ABOUT.values()] and set(tags) == {"raw", "renormalised"}
    terms = {dt["attrs"]["data-metric"]: dt for dt in page.find("dt", inside="glossary") if "data-metric" in dt["attrs"]}
    assert list(terms) == list(METRICS_ABOUT)
    for name, dt in terms.items():
        assert dt["text"].split() == [name, METRICS_ABOUT[name]["basis"]]


def test_no_script_runs_inline_the_config_is_data(client):
    """The CSP allows scripts from this origin only: every <script> has a src, or is JSON data (never run)."""
    page, _ = render(client)
    scripts = page.find("script")
    assert all("src" in s["attrs"] or s["attrs"].get("type") == "application/json" for s in scripts)
    assert [s["attrs"]["id"] for s in scripts if "src" not in s["attrs"]] == ["page-config"]
    assert "script-src" not in client.get("/").headers["content-security-policy"]  # default-src 'self' governs


def test_the_patching_controls_offer_the_analysis_own_lists_and_defaults(client):
    from headscope.analyses import patching
    from headscope.server.schemas.patching import PatchRequest

    page, config = render(client, "?tab=patching")
    p = config["patching"]
    assert p["modes"] == list(patching.MODES) and p["directions"] == list(patching.DIRECTIONS)
    assert p["metrics"] == list(patching.METRICS) and p["direction_about"] == patching.DIRECTION_ABOUT
    assert p["defaults"] == {"patch": PatchRequest.model_fields["patch"].default,
                             "direction": PatchRequest.model_fields["direction"].default}
    for select, offered in (("pt-patch", p["modes"]), ("pt-direction", p["directions"]), ("pt-metric", [""] + p["metrics"])):
        options = page.find("option", inside=select)
        assert [o["attrs"]["value"] for o in options] == offered
        if select != "pt-metric":  # the request's default is the one selected
            default = p["defaults"]["patch" if select == "pt-patch" else "direction"]
            assert [o["attrs"]["value"] for o in options if "selected" in o["attrs"]] == [default]
