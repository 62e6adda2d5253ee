"""GET /api/one-head-or-many: the stored results of the "one head or many?" study (headscope/training/
one_head_or_many.py wrote them; the server reads the file and imports no training code), with the conclusions
drawn from them, read from docs/one-head-or-many.md (their one place: the page shows them, the README links there).
"""

import json
import re

from fastapi import APIRouter

from headscope.data import ONE_HEAD_OR_MANY
from headscope.server.encoding import json_response
from headscope.server.files import docs_dir
from headscope.server.schemas.common import ERROR_RESPONSES

router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)

CONCLUSIONS = "one-head-or-many.md"  # in docs/: its "## What the numbers support" list
CLAIM = re.compile(r"^- \*\*(.+?):?\*\*:?\s*(.*)$")  # "- **Claim:** what the numbers say"


def conclusions(markdown: str) -> list[dict]:
    """The bullets of the document's "What the numbers support" section: [{claim, text}], the text as written (its
    continuation lines joined), the claim without its bold marks."""
    out: list[dict] = []
    inside = False
    for line in markdown.splitlines():
        if line.startswith("## "):
            inside = line.strip() == "## What the numbers support"
            continue
        if not inside:
            continue
        if m := CLAIM.match(line):
            out.append({"claim": m[1].rstrip(":"), "text": m[2].strip()})
        elif line.startswith("- "):
            out.append({"claim": "", "text": line[2:].strip()})
        elif line.startswith("  ") and out:
            out[-1]["text"] += " " + line.strip()
    return out


@router.get("/one-head-or-many", responses={200: {"content": {"application/json": {}}}})
def one_head_or_many():
    """The measured answer to "one head or many?": the dates model's architecture trained with 1, 2, 4 and 8
    heads at the same width, recipe and seed: held-out exact match, train and held-out gap, loss and accuracy
    curves, gradient-norm spread, local and long-range heads, the attention of the 1-head and the best multi-head
    model on one example, and `conclusions` ([{claim, text}], from `conclusions_from`)."""
    record = json.loads(ONE_HEAD_OR_MANY.read_text(encoding="utf-8"))
    record["conclusions"] = conclusions((docs_dir() / CONCLUSIONS).read_text(encoding="utf-8"))
    record["conclusions_from"] = f"docs/{CONCLUSIONS}"
    return json_response(record)
