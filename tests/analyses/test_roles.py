"""headscope/analyses/roles.py: the rules on hand-made metrics, then facts about the real all-MiniLM-L6-v2.

The MiniLM facts were found while choosing the thresholds (docs/metrics.md, "Roles") and hold on
every sentence below; they are what the thresholds must keep true.
"""

import math
from pathlib import Path

import pytest
import torch

from headscope.analyses.metrics import METRICS, head_metrics, is_punctuation, kept_keys
from headscope.analyses.roles import ROLE_RULES, ROLES, head_roles, role_value

DOCUMENTED_THRESHOLDS = {  # docs/metrics.md, "Roles"
    "sink": 0.5,
    "first_token": 0.5,
    "last_token": 0.5,
    "previous_token": 0.5,
    "next_token": 0.5,
    "self": 0.5,
    "duplicate_token": 0.4,
    "induction": 0.5,
    "punctuation": 0.3,
    "broad": 0.8,
    "local": 0.5,
    "long_range": 0.4,
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


@pytest.mark.parametrize("role", ["sink", "previous_token", "next_token", "self", "first_token", "last_token", "punctuation",
                                  "duplicate_token", "induction"])
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


def test_a_sink_at_the_first_or_last_key_is_one_role_not_two():
    assert roles_of(first_token=0.7, sink=0.8) == ["sink"]
    assert roles_of(last_token=0.7, sink=0.8) == ["sink"]
    assert roles_of(first_token=0.7, sink=math.nan) == ["first_token"]  # no special tokens: the first key itself
    # a sink head is judged on the rest of its attention too: the renormalised metrics give their roles
    assert roles_of(sink=0.9, previous_token=0.7) == ["sink", "previous_token", "local"]
    # long_range is blocked by a first- or last-token head, not by a special-token sink (removed from distance)
    assert roles_of(num_tokens=20, distance=0.45 * 20, sink=0.9, first_token=0.8) == ["sink", "long_range"]


def test_undefined_metrics_give_no_role():
    nan = {name: math.nan for name in METRICS}
    assert roles_of(**nan) == []
    value = role_value(ROLE_RULES["local"], one_head(**nan), 20)
    assert torch.isnan(value).all()


def test_several_roles_in_order_and_shape():
    metrics = one_head(previous_token=0.6, self=0.1, first_token=0.6)
    assert head_roles(metrics, 20)[0][0] == ["first_token", "previous_token", "local"]
    grid = {name: torch.zeros(2, 3) for name in METRICS}
    grid["self"][1, 2] = 0.9
    roles = head_roles(grid, 20)
    assert len(roles) == 2 and all(len(layer) == 3 for layer in roles)
    assert roles[1][2] == ["self", "local"]
    assert sum(len(r) for layer in roles for r in layer) == 2


# The real model: all-MiniLM-L6-v2 through headscope/models/minilm.py.

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
    from headscope.models.minilm import MiniLM

    return MiniLM.load()


def metrics_and_roles(analysis):
    """(metrics, roles) of the encoder of one analysis, special tokens flagged as the API does."""
    metrics = head_metrics(analysis.patterns["encoder"], analysis.tokens, analysis.tokens, key_special=analysis.special)
    return metrics, head_roles(metrics, kept_keys(analysis.special, len(analysis.tokens)))


@pytest.fixture(scope="module")
def sentences(minilm_model):
    """(tokens, metrics, roles) per sentence."""
    return [(a.tokens, *metrics_and_roles(a)) for a in map(minilm_model.analyze, SENTENCES)]


def argmax_head(value: torch.Tensor) -> tuple[int, int]:
    """(layer, head) of the largest value of an (L, H) tensor."""
    flat = int(value.nan_to_num(-1.0).flatten().argmax())
    return divmod(flat, value.shape[1])


def heads_with(roles, role: str) -> set[str]:
    return {f"L{layer}H{head}" for layer, row in enumerate(roles) for head, r in enumerate(row) if role in r}


def test_L0H2_is_a_previous_token_head(sentences):
    for tokens, metrics, roles in sentences:
        assert metrics["previous_token"][0, 2] > 0.9, tokens
        assert "previous_token" in roles[0][2]
        assert argmax_head(metrics["previous_token"]) == (0, 2)


def test_L1H8_is_the_next_token_head(sentences):
    for tokens, metrics, roles in sentences:
        assert argmax_head(metrics["next_token"]) == (1, 8), tokens
        assert "next_token" in roles[1][8], tokens


def test_the_sink_is_cls_not_sep(sentences):
    for tokens, metrics, roles in sentences:
        assert "sink" in roles[1][11], tokens
        assert len(heads_with(roles, "sink")) >= 20, tokens
        assert heads_with(roles, "first_token") == heads_with(roles, "last_token") == set()  # [CLS], [SEP]: sinks
        assert (metrics["first_token"] <= metrics["sink"] + 1e-6).all()  # [CLS] is one of the special keys
        assert metrics["last_token"].max() < 0.4, tokens  # nothing close to a [SEP] sink


def test_L3H11_attends_to_punctuation(sentences):
    for tokens, metrics, roles in sentences:
        marks = sum(is_punctuation(t) for t in tokens)
        # Renormalised, one mark among a few words is a large share of what a sink head has left (0.3 for
        # L3H0 on the 9 tokens of "The cat sat on the mat."): L3H11 stands out from 12 tokens or 3 marks on.
        if marks and len(tokens) >= 12:
            top_two = metrics["punctuation"].nan_to_num(-1.0).flatten().topk(2).indices.tolist()
            assert 3 * 12 + 11 in top_two, tokens
        if marks >= 2:
            assert "punctuation" in roles[3][11], tokens
        if marks >= 3:
            assert argmax_head(metrics["punctuation"]) == (3, 11), tokens


def test_layer_0_has_broad_heads(sentences):
    for tokens, metrics, roles in sentences:
        assert "broad" in roles[0][0], tokens
        assert "broad" in roles[0][3], tokens


def test_duplicate_token_heads_not_induction_heads(minilm_model):
    """On 20 random words typed twice, L2H9 and L1H1 look from a repeated word back to its first occurrence:
    the duplicate_token role (L2H9 used to be labelled long_range only). No head is an induction head."""
    for words in REPEATS:
        a = minilm_model.analyze(" ".join(words))
        n = len(words) // 2
        assert len(a.tokens) == 2 * n + 2  # [CLS], n words, the same n words, [SEP]
        metrics, roles = metrics_and_roles(a)
        assert metrics["induction"].max() < 0.1  # chance is about 1/40
        assert heads_with(roles, "induction") == set()
        # Directly: the weight from the repeat's word i to its first occurrence, rows renormalised without specials.
        P = a.patterns["encoder"][..., 1:-1, 1:-1]  # (L, H, 2n, 2n) special rows and keys removed
        P = P / P.sum(-1, keepdim=True)
        second = torch.arange(n, 2 * n)  # (n,) the repeat, among the words
        direct = P[..., second, second - n].mean(-1)  # (L, H)
        torch.testing.assert_close(metrics["duplicate_token"], direct, atol=1e-5, rtol=1e-4)
        assert direct[2, 9] > 0.6 and direct[1, 1] > 0.45
        assert heads_with(roles, "duplicate_token") == {"L1H1", "L2H9"}
        assert sorted(direct.flatten().tolist())[-3] < 0.3


def test_an_aba_repeat_is_no_induction(minilm_model):
    """In "He said it was it." the token after the earlier "it" is the query's own previous token: no induction
    target, so induction is null for every head (it used to give L0H2 1.0)."""
    metrics, roles = metrics_and_roles(minilm_model.analyze("He said it was it."))
    assert torch.isnan(metrics["induction"]).all()
    assert heads_with(roles, "induction") == set()


# ---- A corpus of 199 varied English sentences (tests/data/varied.txt) -------------------------------

VARIED = Path(__file__).parents[1] / "data" / "varied.txt"


@pytest.fixture(scope="module")
def varied(minilm_model):
    from headscope.analyses.heads import Sums, corpus_sums

    texts = [line for line in VARIED.read_text().splitlines() if line.strip()]
    sums = sum((corpus_sums(minilm_model, texts[i : i + 50]) for i in range(0, len(texts), 50)), Sums())
    return {r["name"]: r for r in sums.summary()["encoder"]}


def test_varied_corpus_names_the_positional_heads_under_the_sink(varied):
    """Most of L1H9's and L2H11's attention sits on [CLS]; what is left goes to the previous token. L2H8 and
    L4H9 likewise read the next token. Only the renormalised metrics see it."""
    having = {role: {name for name, r in varied.items() if role in r["roles"]} for role in ROLES}
    assert having["previous_token"] == {"L0H2", "L1H9", "L2H11"}
    assert having["next_token"] == {"L1H8", "L2H8", "L4H9"}
    for name in ("L1H9", "L2H11"):
        assert 0.65 < varied[name]["metrics"]["previous_token"] < 0.75
        assert "sink" in varied[name]["roles"]
        assert varied[name]["role_share"]["previous_token"] > 0.95
    for name in ("L2H8", "L4H9"):
        assert 0.5 < varied[name]["metrics"]["next_token"] < 0.56
        assert 0.5 < varied[name]["role_share"]["next_token"] < 0.8  # half-way heads: they flicker, the share says so
    assert having["punctuation"] == {"L3H11"}
    assert having["induction"] == having["first_token"] == having["last_token"] == set()
    assert len(having["sink"]) >= 30
    sinks_only = [name for name, r in varied.items() if r["roles"] == ["sink"]]
    assert len(sinks_only) < 20  # 14: heads that do nothing positional with what the sink leaves (31 were only first_token)
