"""The page at `/` and the files it loads. Page state lives in the URL (?text=&model=&layer=&head=);
the page fetches its numbers from the JSON API, so every view has a JSON twin."""

from dataclasses import asdict
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates

from headscope.analyses.metrics import METRIC_DEFINITIONS
from headscope.analyses.roles import ROLE_RULES
from headscope.server.deps import ModelsDep, SettingsDep
from headscope.server.files import TEMPLATES, docs_dir

templates = Jinja2Templates(directory=TEMPLATES)

router = APIRouter(include_in_schema=False)


def plotly_path() -> Path:
    """plotly.min.js as shipped inside the `plotly` Python package: served by us, no CDN."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


@router.get("/", response_class=HTMLResponse)
def index(request: Request, models: ModelsDep, settings: SettingsDep):
    infos = [asdict(m.info) for m in models.values()]
    return templates.TemplateResponse(request, "index.html", {
        "models": infos,
        "default_model": infos[0]["name"],
        "settings": settings,
        "metrics": METRIC_DEFINITIONS,
        "roles": {name: rule.description for name, rule in ROLE_RULES.items()},
    })


# The documents the page links to, served as Markdown from docs/: NAME -> what it holds.
LINKED_DOCS = {
    "metrics": "the formulas of every metric and role",
    "ablation": "what zero and mean ablation do, and each effect measure",
    "importance": "the measures and formulas of head importance",
    "probes": "the probes' file format and formulas",
}


@router.get("/docs/{name}.md")
def linked_doc(name: str):
    """docs/NAME.md, one of the documents the page links to (LINKED_DOCS); any other name is a 404."""
    if name not in LINKED_DOCS:
        raise HTTPException(404, f"no document /docs/{name}.md; the page links to "
                            f"{', '.join(f'/docs/{n}.md' for n in LINKED_DOCS)}")
    return FileResponse(docs_dir() / f"{name}.md", media_type="text/markdown; charset=utf-8")


@router.get("/vendor/plotly.min.js")
def plotly_js():
    return FileResponse(plotly_path(), media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"})

