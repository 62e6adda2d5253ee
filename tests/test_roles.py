"""model/roles.py: the rules on hand-made metrics, then facts about the real all-MiniLM-L6-v2.

The MiniLM facts were found while choosing the thresholds (docs/metrics.md, "Roles") and hold on
every sentence below; they are what the thresholds must keep true.
"""

import math

import pytest
import torch

from model.metrics import METRICS, head_metrics, is_punctuation
from model.roles import ROLE_RULES, ROLES, head_roles, role_value

DOCUMENTED_THRESHOLDS = {  # docs/metrics.md, "Roles"
    "previous_token": 0.5,
    "next_token": 0.5,
    "self": 0.5,
    "first_token": 0.5,
    "last_token": 0.5,
    "punctuation": 0.3,
    "broad": 0.8,
    "local": 0.5,
    "long_range": 0.4,
    "induction": 0.5,
}


def one_head(**values: float) -> dict[str, torch.Tensor]:
    """Metrics of a single head (1, 1): the given values, every other metric 0."""
    return {name: torch.tensor([[values.get(name, 0.0)]]) for name in METRICS}


def roles_of(num_tokens: int = 20, **values: float) -> list[str]:
    return head_roles(one_head(**values), num_tokens)[0][0]


def test_rules_are_well_formed():
    assert ROLES == tuple(ROLE_RULES)
    assert {role: rule.threshold for role, rule in ROLE_RULES.items()} == DOCUMENTED_THRESHOLDS
    for rule in ROLE_RULES.values():
        assert set(rule.metrics) <= set(METRICS)
        assert set(rule.unless) <= set(ROLES)
        assert rule.description


@pytest.mark.parametrize("role", ["previous_token", "next_token", "self", "first_token", "last_token", "punctuation", "induction"])
def test_single_metric_roles_fire_at_their_threshold(role):
    threshold = ROLE_RULES[role].threshold
    assert role in roles_of(**{role: threshold})  # previous, self and next are also "local" at 0.5
    assert roles_of(**{role: threshold - 0.01}) == []


def test_broad():
    assert roles_of(entropy_normalized=0.85) == ["broad"]
    assert roles_of(entropy_normalized=0.75) == []


def test_local_sums_previous_self_and_next():
    assert roles_of(previous_token=0.2, self=0.2, next_token=0.2) == ["local"]
    assert roles_of(previous_token=0.2, self=0.2, next_token=0.05) == []
    # causal attention has no next_token: NaN counts as 0, the rest still decides
    assert roles_of(previous_token=0.3, self=0.3, next_token=math.nan) == ["local"]
    # in a short text three keys are a large share of all keys: no local role
    assert roles_of(num_tokens=11, previous_token=0.2, self=0.2, next_token=0.2) == []


def test_long_range_is_per_token_and_not_for_sinks():
    assert roles_of(num_tokens=20, distance=0.45 * 20) == ["long_range"]
    assert roles_of(num_tokens=40, distance=0.45 * 20) == []
    assert roles_of(num_tokens=20, distance=0.45 * 20, first_token=0.7) == ["first_token"]
    assert roles_of(num_tokens=20, distance=0.45 * 20, last_token=0.7) == ["last_token"]


def test_undefined_metrics_give_no_role():
    nan = {name: math.nan for name in METRICS}
    assert roles_of(**nan) == []
    value = role_value(ROLE_RULES["local"], one_head(**nan), 20)
    assert torch.isnan(value).all()


def test_several_roles_in_order_and_shape():
    metrics = one_head(previous_token=0.6, self=0.1, first_token=0.6)
    assert head_roles(metrics, 20)[0][0] == ["previous_token", "first_token", "local"]
    grid = {name: torch.zeros(2, 3) for name in METRICS}
    grid["self"][1, 2] = 0.9
    roles = head_roles(grid, 20)
    assert len(roles) == 2 and all(len(layer) == 3 for layer in roles)
    assert roles[1][2] == ["self", "local"]
    assert sum(len(r) for layer in roles for r in layer) == 2


# The real model: all-MiniLM-L6-v2 through model/minilm.py.

SENTENCES = [
    "The cat sat on the mat.",
    "Attention is all you need, or so the paper says.",
    "In 1969, Neil Armstrong walked on the moon; millions watched on television!",
    "The quick brown fox jumps over the lazy dog",
    "After the meeting ended, the committee members went home, but the chairman stayed behind to write "
    "the report that the board had requested the previous week.",
    "The museum, which opened in 1923, houses more than two million objects: paintings, sculptures, coins "
    "and manuscripts from every continent.",
    "Can you tell me where the nearest train station is?",
    "Stock markets fell sharply on Monday after the central bank unexpectedly raised interest rates by half "
    "a percentage point, surprising investors who had expected a pause. Analysts said the move signalled "
    "growing concern about inflation.",
]
WORDS = (
    "apple river seven window cloud jacket piano honest forest bridge "
    "candle mirror garden silver rocket thunder pencil ocean velvet castle"
).split()
REPEATS = [WORDS + WORDS, WORDS[::-1] + WORDS[::-1]]  # 20 single-piece words, then the same 20 again


@pytest.fixture(scope="module")
def minilm_model():
    from model.minilm import MiniLM

    return MiniLM.load()


@pytest.fixture(scope="module")
def sentences(minilm_model):
    """(tokens, metrics, roles) per sentence."""
    out = []
    for text in SENTENCES:
        a = minilm_model.analyze(text)
        metrics = head_metrics(a.patterns["encoder"], a.tokens, a.tokens)
        out.append((a.tokens, metrics, head_roles(metrics, len(a.tokens))))
    return out


def argmax_head(value: torch.Tensor) -> tuple[int, int]:
    """(layer, head) of the largest value of an (L, H) tensor."""
    flat = int(value.nan_to_num(-1.0).flatten().argmax())
    return divmod(flat, value.shape[1])


def test_L0H2_is_a_previous_token_head(sentences):
    for tokens, metrics, roles in sentences:
        assert metrics["previous_token"][0, 2] > 0.9, tokens
        assert "previous_token" in roles[0][2]
        assert argmax_head(metrics["previous_token"]) == (0, 2)


def test_L1H8_is_the_next_token_head(sentences):
    for tokens, metrics, roles in sentences:
        assert argmax_head(metrics["next_token"]) == (1, 8), tokens
        if len(tokens) >= 12:
            assert "next_token" in roles[1][8], tokens


def test_the_sink_is_cls_not_sep(sentences):
    for tokens, metrics, roles in sentences:
        assert "first_token" in roles[1][11], tokens
        sinks = sum("first_token" in r for layer in roles for r in layer)
        assert sinks >= 8, tokens
        assert metrics["last_token"].max() < 0.4, tokens  # nothing close to a [SEP] sink
        assert not any("last_token" in r for layer in roles for r in layer)


def test_L3H11_attends_to_punctuation(sentences):
    for tokens, metrics, roles in sentences:
        marks = sum(is_punctuation(t) for t in tokens)
        if marks:
            assert argmax_head(metrics["punctuation"]) == (3, 11), tokens
        if marks >= 3:
            assert "punctuation" in roles[3][11], tokens


def test_layer_0_has_broad_heads(sentences):
    for tokens, metrics, roles in sentences:
        assert "broad" in roles[0][0], tokens
        assert "broad" in roles[0][3], tokens


def test_no_induction_head_but_duplicate_token_heads(minilm_model):
    for words in REPEATS:
        a = minilm_model.analyze(" ".join(words))
        n = len(words) // 2
        assert len(a.tokens) == 2 * n + 2  # [CLS], n words, the same n words, [SEP]
        metrics = head_metrics(a.patterns["encoder"], a.tokens, a.tokens)
        assert metrics["induction"].max() < 0.1  # chance is about 1/42
        assert not any("induction" in r for layer in head_roles(metrics, len(a.tokens)) for r in layer)
        assert metrics["previous_token"][0, 2] > 0.9
        # Instead, L2H9 and L1H1 look from a repeated word back to its first occurrence.
        second = torch.arange(1 + n, 1 + 2 * n)  # (n,) query positions of the repeat
        duplicate = a.patterns["encoder"][..., second, second - n].mean(-1)  # (L, H)
        assert duplicate[2, 9] > 0.55 and duplicate[1, 1] > 0.4
        assert sorted(duplicate.flatten().tolist())[-3] < 0.2


def test_roles_of_the_average_over_sentences(sentences):
    means = {name: torch.stack([m[name] for _, m, _ in sentences]).nanmean(0) for name in METRICS}  # (L, H) each
    tokens = round(sum(len(t) for t, _, _ in sentences) / len(sentences))
    roles = head_roles(means, tokens)
    heads = [(layer, head) for layer in range(6) for head in range(12)]
    having = {role: {(layer, head) for layer, head in heads if role in roles[layer][head]} for role in ROLES}
    assert having["previous_token"] == {(0, 2)}
    assert having["next_token"] == {(1, 8)}
    assert having["punctuation"] == {(3, 11)}
    assert {(0, 2), (1, 8)} <= having["local"]
    assert having["last_token"] == having["induction"] == having["self"] == set()
