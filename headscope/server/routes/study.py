"""GET /api/one-head-or-many: the stored results of the "one head or many?" study (headscope/training/
one_head_or_many.py wrote them; the server reads the file and imports no training code)."""

from fastapi import APIRouter
from fastapi.responses import FileResponse

from headscope.data import ONE_HEAD_OR_MANY
from headscope.server.schemas.common import ERROR_RESPONSES

router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)


@router.get("/one-head-or-many", responses={200: {"content": {"application/json": {}}}})
def one_head_or_many():
    """The measured answer to "one head or many?": the dates model's architecture trained with 1, 2, 4 and 8
    heads at the same width, recipe and seed: held-out exact match, train and held-out gap, loss and accuracy
    curves, gradient-norm spread, local and long-range heads, and the attention of the 1-head and the best
    multi-head model on one example."""
    return FileResponse(ONE_HEAD_OR_MANY, media_type="application/json")
