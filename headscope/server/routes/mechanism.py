"""POST /api/explain: every step of one head for one query token, recomputed on the real model (the Mechanism
tab; headscope/analyses/mechanism.py)."""

from fastapi import APIRouter

from headscope.analyses.mechanism import explain as explain_head
from headscope.server.answers import explanation_json, new_tokens
from headscope.server.deps import ModelsDep, RunnerDep, SettingsDep, pick_model
from headscope.server.encoding import json_response
from headscope.server.inputs import model_input
from headscope.server.schemas.common import ERROR_RESPONSES
from headscope.server.schemas.mechanism import ExplainRequest, ExplainResponse

router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)


@router.post("/explain", response_model=ExplainResponse)
async def explain(req: ExplainRequest, models: ModelsDep, runner: RunnerDep, settings: SettingsDep):
    """Every step of one head for one query token, recomputed on the real model: the layer's input x, q_i, every
    k_j and v_j, the scores (masked: null), the weights, z_i, all heads' z_i concatenated, the output after W_O,
    and q_i ⊙ k_j. `shapes` says where each array comes from, `notes` what the family adds (rotary embeddings,
    grouped-query heads, T5's position bias). Headscope's own models, and transformers checkpoints whose attention
    runs through headscope/models/hf/attention.py (BERT, RoBERTa, DistilBERT, GPT-2, Llama, BART, T5); others get 422."""
    model = pick_model(models, req.model)
    generate = new_tokens(model, req)
    given = await model_input(model, req, runner, settings)  # a text, or an image model's picture
    steps = await runner.run(explain_head, model, given.value, req.kind, req.layer, req.head, req.query,
                             req.truncate, generate)
    return json_response(explanation_json(steps))

