"""model/metrics.py on small hand-built patterns whose metrics are worked out by hand below."""

import math

import numpy as np
import pytest
import torch

from model.metrics import (
    METRIC_DEFINITIONS,
    METRICS,
    cluster_order,
    head_distances,
    head_metrics,
    is_punctuation,
)

POSITION_METRICS = ("distance", "previous_token", "next_token", "self", "induction")


def close(value: torch.Tensor, expected: float) -> bool:
    return math.isclose(float(value), expected, rel_tol=1e-6, abs_tol=1e-6)


# Self-attention over 3 tokens, one layer, two heads.
#   head 0: row 0 = [0.5, 0.5, 0], row 1 = [0.25, 0.5, 0.25], row 2 = [0, 0, 1]
#   head 1: uniform, every row = [1/3, 1/3, 1/3]
TOKENS = ["a", ".", "b"]
PATTERN = torch.tensor(
    [
        [
            [[0.5, 0.5, 0.0], [0.25, 0.5, 0.25], [0.0, 0.0, 1.0]],
            [[1 / 3] * 3] * 3,
        ]
    ]
)  # (1, 2, 3, 3)


@pytest.fixture(scope="module")
def full():
    return head_metrics(PATTERN, TOKENS, TOKENS)


def test_names_and_definitions_match(full):
    assert list(METRIC_DEFINITIONS) == list(METRICS)
    assert list(full) == list(METRICS)
    for name, value in full.items():
        assert value.shape == (1, 2), name
        assert value.dtype == torch.float32, name


def test_entropy_by_hand(full):
    # rows: ln 2;  -(2 · 0.25 ln 0.25 + 0.5 ln 0.5) = 1.5 ln 2;  0
    assert close(full["entropy"][0, 0], (math.log(2) + 1.5 * math.log(2) + 0.0) / 3)
    assert close(full["entropy_normalized"][0, 0], (math.log(2) + 1.5 * math.log(2)) / math.log(3) / 3)
    assert close(full["entropy"][0, 1], math.log(3))
    assert close(full["entropy_normalized"][0, 1], 1.0)


def test_position_metrics_by_hand(full):
    # distance rows: 0.5·1;  0.25·1 + 0.25·1;  0
    assert close(full["distance"][0, 0], (0.5 + 0.5 + 0.0) / 3)
    # uniform: rows (0+1+2)/3, (1+0+1)/3, (2+1+0)/3
    assert close(full["distance"][0, 1], (1.0 + 2 / 3 + 1.0) / 3)
    assert close(full["previous_token"][0, 0], (0.25 + 0.0) / 2)  # A[1,0], A[2,1]
    assert close(full["next_token"][0, 0], (0.5 + 0.25) / 2)  # A[0,1], A[1,2]
    assert close(full["self"][0, 0], (0.5 + 0.5 + 1.0) / 3)
    assert close(full["self"][0, 1], 1 / 3)


def test_sink_punctuation_confidence_by_hand(full):
    assert close(full["first_token"][0, 0], (0.5 + 0.25 + 0.0) / 3)
    assert close(full["last_token"][0, 0], (0.0 + 0.25 + 1.0) / 3)
    assert close(full["punctuation"][0, 0], (0.5 + 0.5 + 0.0) / 3)  # key 1 is "."
    assert close(full["confidence"][0, 0], (0.5 + 0.5 + 1.0) / 3)
    assert close(full["confidence"][0, 1], 1 / 3)


def test_induction_is_nan_without_repeats(full):
    assert torch.isnan(full["induction"]).all()


def test_every_head_is_computed_on_its_own():
    torch.manual_seed(0)
    pattern = torch.softmax(torch.randn(2, 3, 7, 7), -1)  # (L, H, T, T)
    tokens = ["[CLS]", "a", "b", ",", "a", "b", "[SEP]"]
    together = head_metrics(pattern, tokens, tokens)
    for layer in range(2):
        for head in range(3):
            alone = head_metrics(pattern[layer : layer + 1, head : head + 1], tokens, tokens)
            for name in METRICS:
                torch.testing.assert_close(together[name][layer, head], alone[name][0, 0], msg=name)


# Causal self-attention over 3 tokens: row 0 = [1, 0, 0], row 1 = [0.5, 0.5, 0], row 2 = [0.2, 0.3, 0.5]
CAUSAL_TOKENS = ["x", ",", "y"]
CAUSAL = torch.tensor([[[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]]]])  # (1, 1, 3, 3)


def test_causal_by_hand():
    m = head_metrics(CAUSAL, CAUSAL_TOKENS, CAUSAL_TOKENS, causal=True)
    row2 = -(0.2 * math.log(0.2) + 0.3 * math.log(0.3) + 0.5 * math.log(0.5))
    assert close(m["entropy"][0, 0], (0.0 + math.log(2) + row2) / 3)
    # row 0 sees one key and is left out; row 1 divides by ln 2, row 2 by ln 3
    assert close(m["entropy_normalized"][0, 0], (math.log(2) / math.log(2) + row2 / math.log(3)) / 2)
    assert close(m["distance"][0, 0], (0.0 + 0.5 * 1 + (0.2 * 2 + 0.3 * 1)) / 3)
    assert close(m["previous_token"][0, 0], (0.5 + 0.3) / 2)
    assert torch.isnan(m["next_token"]).all()  # the next key is never visible
    assert close(m["self"][0, 0], (1.0 + 0.5 + 0.5) / 3)
    assert close(m["first_token"][0, 0], (1.0 + 0.5 + 0.2) / 3)
    assert close(m["last_token"][0, 0], 0.5)  # only row 2 sees key 2
    assert close(m["punctuation"][0, 0], (0.5 + 0.3) / 2)  # rows 1 and 2 see the ","
    assert close(m["confidence"][0, 0], (1.0 + 0.5 + 0.5) / 3)


def test_causal_flag_changes_what_counts():
    m = head_metrics(CAUSAL, CAUSAL_TOKENS, CAUSAL_TOKENS, causal=False)
    assert close(m["last_token"][0, 0], (0.0 + 0.0 + 0.5) / 3)
    assert close(m["punctuation"][0, 0], (0.0 + 0.5 + 0.3) / 3)
    assert close(m["next_token"][0, 0], (0.0 + 0.0) / 2)
    row2 = -(0.2 * math.log(0.2) + 0.3 * math.log(0.3) + 0.5 * math.log(0.5))
    assert close(m["entropy_normalized"][0, 0], (0.0 + math.log(2) + row2) / math.log(3) / 3)  # all rows, all by ln 3


def test_induction_by_hand():
    tokens = ["a", "b", "c", "a", "b"]
    # Targets: query 3 ("a") -> key 1 (after the earlier "a"); query 4 ("b") -> key 2.
    uniform = [0.2] * 5
    induction_head = [uniform, uniform, uniform, [0.0, 0.6, 0.0, 0.4, 0.0], [0.0, 0.0, 0.8, 0.0, 0.2]]
    duplicate_head = [uniform, uniform, uniform, [1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0, 0.0]]
    uniform_head = [uniform] * 5
    pattern = torch.tensor([[induction_head, duplicate_head, uniform_head]])  # (1, 3, 5, 5)
    m = head_metrics(pattern, tokens, tokens)
    assert close(m["induction"][0, 0], (0.6 + 0.8) / 2)
    assert close(m["induction"][0, 1], 0.0)
    assert close(m["induction"][0, 2], (0.2 + 0.2) / 2)


def test_induction_with_several_targets_causal():
    tokens = ["a", "a", "a"]
    # query 1: key 1 (after key 0); query 2: keys 1 and 2 (after keys 0 and 1)
    pattern = torch.tensor([[[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.5, 0.5]]]])  # (1, 1, 3, 3)
    m = head_metrics(pattern, tokens, tokens, causal=True)
    assert close(m["induction"][0, 0], (0.5 + 0.5 + 0.5) / 2)


def test_cross_attention():
    queries, keys = ["x", "y"], ["[CLS]", "b", "."]
    pattern = torch.tensor([[[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]]])  # (1, 1, 2, 3)
    m = head_metrics(pattern, queries, keys)
    for name in POSITION_METRICS:
        assert torch.isnan(m[name]).all(), name
    row0 = 0.5 * math.log(2) + 2 * 0.25 * math.log(4)
    row1 = -(2 * 0.1 * math.log(0.1) + 0.8 * math.log(0.8))
    assert close(m["entropy"][0, 0], (row0 + row1) / 2)
    assert close(m["entropy_normalized"][0, 0], (row0 + row1) / math.log(3) / 2)
    assert close(m["first_token"][0, 0], (0.5 + 0.1) / 2)
    assert close(m["last_token"][0, 0], (0.25 + 0.8) / 2)
    assert close(m["punctuation"][0, 0], (0.25 + 0.8) / 2)
    assert close(m["confidence"][0, 0], (0.5 + 0.8) / 2)


def test_square_cross_attention_is_told_by_its_tokens():
    pattern = torch.tensor([[[[0.5, 0.5], [0.0, 1.0]]]])  # (1, 1, 2, 2)
    m = head_metrics(pattern, ["x", "y"], ["a", "b"])
    for name in POSITION_METRICS:
        assert torch.isnan(m[name]).all(), name
    assert close(m["last_token"][0, 0], (0.5 + 1.0) / 2)


def test_cross_attention_with_equal_token_lists_when_told():
    tokens = ["a", "b"]
    pattern = torch.tensor([[[[0.5, 0.5], [0.0, 1.0]]]])  # (1, 1, 2, 2)
    assert close(head_metrics(pattern, tokens, tokens)["self"][0, 0], (0.5 + 1.0) / 2)
    m = head_metrics(pattern, tokens, tokens, same_sequence=False)
    for name in POSITION_METRICS:
        assert torch.isnan(m[name]).all(), name
    assert close(m["first_token"][0, 0], 0.5 / 2)


def test_single_token():
    m = head_metrics(torch.ones(1, 1, 1, 1), ["[CLS]"], ["[CLS]"])
    assert close(m["entropy"][0, 0], 0.0)
    for name in ("entropy_normalized", "previous_token", "next_token", "punctuation", "induction"):
        assert torch.isnan(m[name]).all(), name
    for name in ("self", "first_token", "last_token", "confidence"):
        assert close(m[name][0, 0], 1.0), name
    assert close(m["distance"][0, 0], 0.0)


def test_punctuation_without_punctuation_is_nan():
    m = head_metrics(PATTERN, ["a", "b", "c"], ["a", "b", "c"])
    assert torch.isnan(m["punctuation"]).all()


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        head_metrics(PATTERN[0], TOKENS, TOKENS)  # no layer axis
    with pytest.raises(ValueError):
        head_metrics(PATTERN, TOKENS[:2], TOKENS)  # token count does not match
    with pytest.raises(ValueError):
        head_metrics(torch.full((1, 1, 2, 3), 1 / 3), ["x", "y"], ["a", "b", "c"], causal=True)


@pytest.mark.parametrize(
    "token, expected",
    [(".", True), ("?", True), ("##,", True), ("Ġ!", True), ("▁;", True), ("...", True), ("?!", True), (":", True),
     ("a.", False), ("", False), ("##", False), ("[SEP]", False), ("-", False), ("'", False)],
)
def test_is_punctuation(token, expected):
    assert is_punctuation(token) is expected


# Head similarity


def hellinger_by_scipy(patterns: torch.Tensor) -> torch.Tensor:
    """Row by row with scipy: H(p, q) = ||sqrt(p) - sqrt(q)|| / sqrt(2), then the root mean square over rows."""
    from scipy.spatial.distance import euclidean

    N, Tq, _ = patterns.shape
    P = patterns.double().numpy()
    out = torch.zeros(N, N, dtype=torch.float64)
    for a in range(N):
        for b in range(N):
            rows = [euclidean(np.sqrt(P[a, i]), np.sqrt(P[b, i])) / math.sqrt(2) for i in range(Tq)]
            out[a, b] = math.sqrt(sum(h * h for h in rows) / Tq)
    return out


def test_head_distances_match_scipy():
    torch.manual_seed(1)
    scores = torch.randn(6, 4, 5) * 2  # (N, Tq, Tk)
    scores[2, :, 3] = -math.inf  # exact zeros
    scores[4] = scores[4].masked_fill(torch.ones(4, 5, dtype=torch.bool).triu(1), -math.inf)  # a causal head
    patterns = torch.softmax(scores, -1)  # (N, Tq, Tk)
    ours = head_distances(patterns)
    torch.testing.assert_close(ours.double(), hellinger_by_scipy(patterns), atol=1e-5, rtol=0)


def test_head_distances_by_hand():
    patterns = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[0.5, 0.5]], [[1.0, 0.0]]])  # (4, 1, 2)
    d = head_distances(patterns)
    assert close(d[0, 1], 1.0)  # disjoint rows
    assert close(d[0, 2], math.sqrt(1 - math.sqrt(0.5)))  # 1 - Σ sqrt(p q) = 1 - sqrt(1 · 0.5)
    assert float(d[0, 3]) == 0.0  # identical heads


def test_head_distances_symmetric_zero_diagonal_bounded():
    torch.manual_seed(2)
    patterns = torch.softmax(torch.randn(9, 6, 6) * 3, -1)
    d = head_distances(patterns)
    assert d.shape == (9, 9)
    torch.testing.assert_close(d, d.T, atol=1e-6, rtol=0)
    assert torch.equal(d.diagonal(), torch.zeros(9))
    assert (d[~torch.eye(9, dtype=torch.bool)] > 0).all() and (d <= 1).all()


def test_cluster_order_groups_alike_heads():
    torch.manual_seed(4)
    T = 8
    previous = torch.diag(torch.ones(T - 1), -1)  # (T, T): every query on the token before
    previous[0, 0] = 1.0
    first = torch.zeros(T, T)
    first[:, 0] = 1.0  # every query on token 0
    heads = []
    for n in range(6):  # previous, first, previous, first, ... with a little noise
        base = previous if n % 2 == 0 else first
        heads.append(torch.softmax(torch.log(base * 0.9 + 0.1 / T) + 0.1 * torch.randn(T, T), -1))
    order = cluster_order(head_distances(torch.stack(heads)))
    assert sorted(order) == list(range(6))
    kinds = [n % 2 for n in order]
    assert kinds in ([0, 0, 0, 1, 1, 1], [1, 1, 1, 0, 0, 0])


def test_cluster_order_small_cases():
    assert cluster_order(torch.zeros(0, 0)) == []
    assert cluster_order(torch.zeros(1, 1)) == [0]
    assert cluster_order(torch.tensor([[0.0, 0.3], [0.3, 0.0]])) == [0, 1]


def test_cluster_order_puts_neighbours_next_to_each_other():
    # Heads at points on a line: the optimally ordered leaves walk along the line.
    x = torch.tensor([0.0, 0.5, 0.1, 0.42, 0.2, 0.3, 0.05, 0.61])
    order = cluster_order((x[:, None] - x[None, :]).abs())
    walk = x[order]
    assert torch.equal(walk, walk.sort().values) or torch.equal(walk, walk.sort(descending=True).values)
