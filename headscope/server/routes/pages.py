"""The page at `/` and the files it loads. Page state lives in the URL (?text=&model=&layer=&head=&tab=…);
the page fetches its numbers from the JSON API, so every view has a JSON twin.

The page's scripts copy no server constant: the template renders a config block (`page_config`, a
<script type="application/json">: data, not code, so the CSP's script-src 'self' holds) from the one
source of each — the tabs (headscope/server/tabs.py), the ablation modes (headscope/models/interventions.py),
the kinds of `weights` (headscope/server/answers.py), the limits (headscope/server/settings.py), the error
codes (headscope/server/errors.py) and what each metric is computed on (headscope/analyses/metrics.py).
"""

from dataclasses import asdict
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from headscope.analyses.metrics import METRICS_ABOUT
from headscope.analyses.patching import DIRECTION_ABOUT, DIRECTIONS as PATCH_DIRECTIONS, METRICS as PATCH_METRICS
from headscope.analyses.patching import MODES as PATCH_MODES
from headscope.analyses.roles import ROLE_RULES
from headscope.models.interventions import MODES
from headscope.models.metric_choice import METRIC_ABOUT, METRIC_GENERATIONS, METRIC_NAMES
from headscope.server import documents, tabs
from headscope.server.answers import WEIGHTS, weights_about
from headscope.server.deps import ModelsDep, SettingsDep
from headscope.server.errors import ErrorCode
from headscope.server.files import TEMPLATES
from headscope.server.schemas.attention import AblationRequest, AttentionRequest
from headscope.server.schemas.detect import DetectRequest
from headscope.server.schemas.patching import PatchRequest
from headscope.server.settings import Settings, public_limits

templates = Jinja2Templates(directory=TEMPLATES)
templates.env.globals["doc_url"] = documents.linked  # every link to a document: {{ doc_url("metrics") }}

router = APIRouter(include_in_schema=False)


def plotly_path() -> Path:
    """plotly.min.js as shipped inside the `plotly` Python package: served by us, no CDN."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def page_config(request: Request, settings: Settings, tab: tabs.Tab, model: str) -> dict:
    """What the page's scripts read instead of copies (static/js/lib/config.js): the tab and model the URL
    asked for (checked here), every tab with its script's URL, the ablation modes, the `weights` kinds, the
    limits, the error codes, each metric's basis and the patching modes, directions and metrics, the detectors' defaults."""
    return {
        "tab": tab.name,
        "model": model,
        "tabs": [{"name": t.name, "label": t.label, "docs": t.docs, "not_for_images": t.not_for_images,
                  "script": request.url_for("static", path=t.script).path} for t in tabs.TABS],
        "ablation": {"modes": list(MODES), "default": AblationRequest.model_fields["ablation"].default},
        "weights": {"kinds": [{"name": w, "label": weights_about(w, {})["label"]} for w in WEIGHTS],
                    "default": AttentionRequest.model_fields["weights"].default},
        "limits": public_limits(settings),
        "errors": {code.name: code.value for code in ErrorCode},
        "metrics": METRICS_ABOUT,
        "metric_choice": {"names": list(METRIC_NAMES), "generations": list(METRIC_GENERATIONS),
                          "about": {n: METRIC_ABOUT[n][0] for n in METRIC_NAMES}},
        "patching": {"modes": list(PATCH_MODES), "directions": list(PATCH_DIRECTIONS), "metrics": list(PATCH_METRICS),
                     "direction_about": DIRECTION_ABOUT,
                     "defaults": {name: PatchRequest.model_fields[name].default for name in ("patch", "direction")}},
        "detect": {"defaults": {name: DetectRequest.model_fields[name].default for name in ("seed", "sequences")}},
    }


def notices(tab: str | None, model: str | None, models: list[str]) -> list[str]:
    """What the page says about a `?tab=` or `?model=` it does not have (it shows the default instead)."""
    said = []
    if tab and tabs.tab_named(tab) is None:
        said.append(f"There is no tab {tab!r}: showing {tabs.TABS[0].label}. The tabs are "
                    + ", ".join(f"{t.label} (tab={t.name})" for t in tabs.TABS) + ".")
    if model and model not in models:
        said.append(f"This server has no model {model!r}: showing {models[0]}. It serves " + ", ".join(models) + ".")
    return said


@router.get("/", response_class=HTMLResponse)
def index(request: Request, models: ModelsDep, settings: SettingsDep, tab: str | None = None,
          model: str | None = None):
    infos = [asdict(m.info) for m in models.values()]
    names = [info["name"] for info in infos]
    active = tabs.tab_named(tab) or tabs.TABS[0]
    chosen = model if model in names else names[0]
    config = page_config(request, settings, active, chosen)
    return templates.TemplateResponse(request, "index.html", {
        "models": infos,
        "default_model": chosen,
        "settings": settings,
        "tabs": tabs.TABS,
        "active_tab": active.name,
        "notices": notices(tab, model, names),
        "config": config,  # the controls that offer modes and weights kinds are rendered from it too
        "metrics": METRICS_ABOUT,
        "roles": {name: rule.description for name, rule in ROLE_RULES.items()},
    })


def unknown_doc(name: str, suffix: str) -> HTTPException:
    return HTTPException(404, f"no document /docs/{name}{suffix}; the page links to "
                         f"{', '.join(documents.html_path(n) for n in documents.LINKED_DOCS)} "
                         "(each also as its Markdown source, /docs/NAME.md)")


@router.get("/docs/{name}.md")
def linked_doc(name: str):
    """docs/NAME.md, the Markdown source of one of the documents the page links to (documents.LINKED_DOCS)."""
    if name not in documents.LINKED_DOCS:
        raise unknown_doc(name, ".md")
    return FileResponse(documents.source(name), media_type="text/markdown; charset=utf-8")


@router.get("/docs/{name}.html", response_class=HTMLResponse)
def linked_doc_page(request: Request, name: str):
    """docs/NAME.md as a page: the document rendered, the other documents, and its Markdown twin."""
    if name not in documents.LINKED_DOCS:
        raise unknown_doc(name, ".html")
    title, body = documents.rendered(name)
    return templates.TemplateResponse(request, "doc.html", {
        "title": title, "body": body, "markdown": documents.markdown_path(name),
        "others": [(documents.html_path(n), n, about) for n, about in documents.LINKED_DOCS.items() if n != name],
    })


@router.get("/favicon.ico")
def favicon():
    """No icon (the pages say `rel="icon" href="data:,"`), but a browser showing a raw answer or a document's
    Markdown asks for one: say so without an error in its console."""
    return Response(status_code=204)


@router.get("/vendor/plotly.min.js")
def plotly_js():
    return FileResponse(plotly_path(), media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"})

