"""Every answer against its published schema. Routes build their own responses (for speed), so
FastAPI's response_model validates nothing at run time: these tests do, for every model and format."""

import base64
import io
import json

import numpy as np
import pytest
import zstandard
from PIL import Image

from headscope.server.encoding import read_safetensors
from headscope.server.schemas.attention import AttentionResponse
from headscope.server.schemas.common import ErrorResponse
from headscope.server.schemas.corpus import CorpusResponse
from headscope.server.schemas.models import ModelsResponse



def drawing() -> str:
    """An image model's input: an 8 x 8 PNG (a bright bar on black), base64."""
    pixels = np.zeros((8, 8), np.uint8)
    pixels[1:7, 3:5] = 255
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def test_models_answer_matches_its_schema(client):
    ModelsResponse.model_validate(client.get("/api/models").json(), strict=False)


@pytest.mark.parametrize("fmt", ["json", "compact", "safetensors"])
def test_attention_answers_match_their_schema(client, models, fmt):
    for name, model in models.items():
        given = {"text": "The 3rd of May 2001."} if model.info.takes == "text" else {"image": drawing()}
        r = client.post("/api/attention", json={**given, "model": name, "format": fmt,
                                                "similarity": model.info.takes == "text"},
                        headers={"Accept-Encoding": "zstd"})
        assert r.status_code == 200, r.text
        body = zstandard.ZstdDecompressor().decompressobj().decompress(r.content)
        if fmt == "json":
            AttentionResponse.model_validate_json(body)
        else:
            answer = read_safetensors(body)
            n = int.from_bytes(body[:8], "little")
            metadata = {k: json.loads(v) for k, v in json.loads(body[8 : 8 + n])["__metadata__"].items()}
            AttentionResponse.model_validate(metadata, strict=False)
            assert set(answer["attention"]) == set(metadata["layout"])


def test_corpus_answer_and_errors_match_their_schema(client, models):
    for name in [n for n, m in models.items() if m.info.takes == "text"]:
        r = client.post("/api/corpus", json={"texts": ["One sentence.", "", "Two sentences here."], "model": name})
        CorpusResponse.model_validate(r.json(), strict=False)
    for bad in ({"text": ""}, {"text": "x", "model": "nope"}, {"text": "x", "pool_to": 1}):
        r = client.post("/api/attention", json=bad)
        assert r.status_code == 422
        ErrorResponse.model_validate(r.json(), strict=False)
