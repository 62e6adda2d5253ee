"""One list of error codes (headscope/server/errors.py ErrorCode): every code the code base can answer with is
in it, and /openapi.json publishes it as the enum of every error's `error`."""

import re
from pathlib import Path

import pytest

from headscope.server.errors import ApiError, ErrorCode

PACKAGE = Path(__file__).resolve().parents[2] / "headscope"


def written_codes() -> set[str]:
    """Every code written in the package: ErrorCode.NAME, and the codes of errors raised below the server
    (CannotMeasure / BadTexts in headscope/analyses/importance.py, CannotPatch / AttributionError in
    headscope/analyses/patching.py and attribution.py, BadMetric in headscope/models/metric_choice.py)."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        found |= set(re.findall(r"ErrorCode\.([a-z_]+)", text))
        found |= set(re.findall(r"(?:CannotMeasure|BadTexts|CannotPatch|AttributionError|BadMetric)\(\s*\"([a-z_]+)\"", text))
    return found


def test_every_code_written_is_in_the_list():
    codes = written_codes()
    assert "no_texts" in codes and "too_many_heads" in codes  # the search finds both kinds
    assert "not_one_token" in codes and "not_attributable" in codes
    assert codes - {c.value for c in ErrorCode} == set()


def test_a_code_outside_the_list_cannot_be_raised():
    assert ApiError("too_many_tokens", "x").status_code == 422
    with pytest.raises(ValueError):
        ApiError("made_up", "x")


def test_the_schema_lists_every_code_and_each_status_says_its_codes(client):
    schema = client.get("/openapi.json").json()
    assert schema["components"]["schemas"]["ErrorCode"]["enum"] == [c.value for c in ErrorCode]
    responses = schema["paths"]["/api/attention"]["post"]["responses"]
    for code in ErrorCode:
        assert f"`{code.value}`" in responses[str(code.status)]["description"]
