"""headscope/analyses/metrics.py on small hand-built patterns whose metrics are worked out by hand below."""

import math

import numpy as np
import pytest
import torch

from headscope.analyses.metrics import (
    METRIC_DEFINITIONS,
    METRICS,
    cluster_order,
    head_distances,
    head_metrics,
    is_punctuation,
)

POSITION_METRICS = ("distance", "previous_token", "next_token", "self", "duplicate_token", "induction")


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
    assert close(full["last_token"][0, 0], (0.0 + 0.25) / 2)  # row 2 is the last key itself: its weight is `self`
    assert close(full["punctuation"][0, 0], (0.5 + 0.0) / 2)  # key 1 is "."; row 1 is that "." itself
    assert close(full["confidence"][0, 0], (0.5 + 0.5 + 1.0) / 3)
    assert close(full["confidence"][0, 1], 1 / 3)


def test_induction_is_nan_without_repeats(full):
    assert torch.isnan(full["induction"]).all()


def test_every_head_is_computed_on_its_own():
    torch.manual_seed(0)
    pattern = torch.softmax(torch.randn(2, 3, 7, 7), -1)  # (L, H, T, T)
    tokens = ["[CLS]", "a", "b", ",", "a", "b", "[SEP]"]
    special = [True, False, False, False, False, False, True]
    together = head_metrics(pattern, tokens, tokens, key_special=special)
    for layer in range(2):
        for head in range(3):
            alone = head_metrics(pattern[layer : layer + 1, head : head + 1], tokens, tokens, key_special=special)
            for name in METRICS:
                torch.testing.assert_close(together[name][layer, head], alone[name][0, 0], equal_nan=True, msg=name)


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
    assert torch.isnan(m["last_token"]).all()  # only row 2 sees key 2, and row 2 is key 2
    assert close(m["punctuation"][0, 0], 0.3)  # rows 1 and 2 see the ","; row 1 is the "," itself
    assert close(m["confidence"][0, 0], (1.0 + 0.5 + 0.5) / 3)


def test_causal_flag_changes_what_counts():
    m = head_metrics(CAUSAL, CAUSAL_TOKENS, CAUSAL_TOKENS, causal=False)
    assert close(m["last_token"][0, 0], (0.0 + 0.0) / 2)
    assert close(m["punctuation"][0, 0], (0.0 + 0.3) / 2)
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
    tokens = ["a", "a", "a", "a", "a"]
    # Targets j = i' + 1 with i' <= i - 3: query 3 -> key 1 (after key 0); query 4 -> keys 1 and 2.
    # Queries 0-2 have none: their earlier "a"s are followed by the query itself or its previous token.
    pattern = torch.tensor([[[
        [1.0, 0.0, 0.0, 0.0, 0.0],
        [0.5, 0.5, 0.0, 0.0, 0.0],
        [0.2, 0.3, 0.5, 0.0, 0.0],
        [0.1, 0.4, 0.2, 0.3, 0.0],
        [0.1, 0.3, 0.2, 0.2, 0.2],
    ]]])  # (1, 1, 5, 5)
    m = head_metrics(pattern, tokens, tokens, causal=True)
    assert close(m["induction"][0, 0], (0.4 + (0.3 + 0.2)) / 2)
    # duplicate_token: every earlier key is the same token: rows 1..4, weight on keys j < i
    assert close(m["duplicate_token"][0, 0], (0.5 + 0.5 + 0.7 + 0.8) / 4)


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
    for name in ("self", "first_token", "confidence"):
        assert close(m[name][0, 0], 1.0), name
    assert torch.isnan(m["last_token"]).all()  # the one row is the last key itself
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


# ---- Special tokens: sink mass, and every other metric on renormalised rows ------------------------
#
# A reference written with numpy and plain loops, one head and one row at a time, from the definitions
# in docs/metrics.md: it shares nothing with headscope/analyses/metrics.py but the constant MIN_KEPT.

MIN_KEPT = 0.01


def reference(A, q_tokens, k_tokens, causal, same, q_special, k_special):
    """docs/metrics.md's formulas for one head: A (Tq, Tk) numpy -> {metric: float or nan}."""
    Tq, Tk = A.shape
    sees = lambda i, j: j <= i if causal else True  # noqa: E731
    mean = lambda xs: float(np.mean(xs)) if xs else math.nan  # noqa: E731
    out = {
        "first_token": mean([A[i, 0] for i in range(Tq)]),
        "last_token": mean([A[i, Tk - 1] for i in range(Tq) if sees(i, Tk - 1) and not (same and i == Tk - 1)]),
        "confidence": mean([A[i].max() for i in range(Tq)]),
        "sink": mean([sum(A[i, j] for j in range(Tk) if k_special[j]) for i in range(Tq)
                      if any(k_special[j] and sees(i, j) for j in range(Tk))]),
    }
    qs = [i for i in range(Tq) if not q_special[i]]  # kept queries and keys, by original position
    ks = [j for j in range(Tk) if not k_special[j]]
    rows = {name: [] for name in ("entropy", "entropy_normalized", "distance", "previous_token", "next_token", "self",
                                  "duplicate_token", "induction", "punctuation")}
    for a, i in enumerate(qs):  # a, b: positions among the kept tokens
        mass = sum(A[i, j] for j in ks)
        if mass < MIN_KEPT:
            continue
        r = [A[i, j] / mass for j in ks]
        seen = [b for b, j in enumerate(ks) if sees(i, j)]
        rows["entropy"].append(-sum(p * math.log(p) for p in r if p > 0))
        if len(seen) > 1:
            rows["entropy_normalized"].append(rows["entropy"][-1] / math.log(len(seen)))
        punct = [b for b in seen if is_punctuation(k_tokens[ks[b]]) and not (same and b == a)]
        if punct:
            rows["punctuation"].append(sum(r[b] for b in punct))
        if not same:
            continue
        rows["distance"].append(sum(p * abs(a - b) for b, p in enumerate(r)))
        rows["self"].append(r[a])
        if a >= 1:
            rows["previous_token"].append(r[a - 1])
        if a + 1 < len(ks) and not causal:
            rows["next_token"].append(r[a + 1])
        tok = [k_tokens[j] for j in ks]
        earlier = [b for b in range(a) if tok[b] == tok[a]]
        if earlier:
            rows["duplicate_token"].append(sum(r[b] for b in earlier))
        targets = {b + 1 for b in range(len(ks) - 1) if tok[b] == tok[a] and b < a - 1 and b + 1 not in (a - 1, a)}
        if targets:
            rows["induction"].append(sum(r[b] for b in targets))
    out.update({name: mean(values) for name, values in rows.items()})
    if not same:
        for name in ("distance", "previous_token", "next_token", "self", "duplicate_token", "induction"):
            out[name] = math.nan
    return out


def random_pattern(rng, L, H, Tq, Tk, causal, sink_rows=()):
    """Softmax of random scores, masked when causal; rows in sink_rows put all but ~1e-3 on key 0."""
    scores = rng.normal(size=(L, H, Tq, Tk)) * 2
    if causal:
        scores = np.where(np.tril(np.ones((Tq, Tk), bool)), scores, -np.inf)
    for i in sink_rows:
        scores[:, :, i, 0] += 12
    A = np.exp(scores - scores.max(-1, keepdims=True))
    return A / A.sum(-1, keepdims=True)


def assert_matches_reference(A, q_tokens, k_tokens, causal=False, same=True, q_special=None, k_special=None):
    k_special = k_special if k_special is not None else [False] * len(k_tokens)
    q_special = q_special if q_special is not None else (k_special if same else [False] * len(q_tokens))
    got = head_metrics(torch.tensor(A, dtype=torch.float32), q_tokens, k_tokens, causal=causal, same_sequence=same,
                       query_special=q_special, key_special=k_special)
    L, H = A.shape[:2]
    for layer in range(L):
        for head in range(H):
            expected = reference(A[layer, head], q_tokens, k_tokens, causal, same, q_special, k_special)
            for name in METRICS:
                e, g = expected[name], float(got[name][layer, head])
                assert math.isnan(e) == math.isnan(g), (name, layer, head, e, g)
                if not math.isnan(e):
                    assert g == pytest.approx(e, rel=1e-4, abs=1e-5), (name, layer, head)


SPECIAL_TOKENS = ["[CLS]", "the", "cat", ",", "the", "dog", "and", "the", "cat", "ran", ".", "[SEP]"]
SPECIAL_FLAGS = [t in ("[CLS]", "[SEP]") for t in SPECIAL_TOKENS]


@pytest.mark.parametrize("causal", [False, True])
def test_renormalised_metrics_match_a_numpy_reference(causal):
    rng = np.random.default_rng(1)
    T = len(SPECIAL_TOKENS)
    A = random_pattern(rng, 2, 3, T, T, causal, sink_rows=(4, 9))  # rows 4 and 9: under MIN_KEPT left, in most heads
    assert_matches_reference(A, SPECIAL_TOKENS, SPECIAL_TOKENS, causal=causal, k_special=SPECIAL_FLAGS)


def test_specials_in_the_middle_and_at_the_start_of_a_causal_sequence():
    rng = np.random.default_rng(2)
    tokens = ["<s>", "a", "b", "a", "b", "</s>", "a", "c", "a", "b"]
    flags = [t.startswith("<") for t in tokens]
    assert_matches_reference(random_pattern(rng, 1, 4, 10, 10, True), tokens, tokens, causal=True, k_special=flags)
    assert_matches_reference(random_pattern(rng, 1, 4, 10, 10, False), tokens, tokens, k_special=flags)


def test_cross_attention_with_specials_matches_the_reference():
    rng = np.random.default_rng(3)
    queries = ["<start>", "x", "y", "x", "<end>"]
    keys = ["[CLS]", "a", ",", "b", "[SEP]"]
    assert_matches_reference(random_pattern(rng, 2, 2, 5, 5, False), queries, keys, same=False,
                             q_special=[True, False, False, False, True], k_special=[True, False, False, False, True])


def test_no_specials_leaves_the_metrics_as_the_raw_pattern_and_sink_null():
    rng = np.random.default_rng(4)
    tokens = ["a", "b", "c", "a", "b", "c", "."]
    A = random_pattern(rng, 1, 3, 7, 7, False)
    assert_matches_reference(A, tokens, tokens)
    assert torch.isnan(head_metrics(torch.tensor(A, dtype=torch.float32), tokens, tokens)["sink"]).all()


def test_renormalising_by_hand():
    # [CLS] a b [SEP]; rows:  [CLS] row left out;  a: [0.6, 0.1, 0.3, 0.0];  b: [0.5, 0.25, 0.0, 0.25];  [SEP] left out
    tokens, flags = ["[CLS]", "a", "b", "[SEP]"], [True, False, False, True]
    pattern = torch.tensor([[[[1.0, 0.0, 0.0, 0.0], [0.6, 0.1, 0.3, 0.0], [0.5, 0.25, 0.0, 0.25], [0.0, 0.0, 0.0, 1.0]]]])
    m = head_metrics(pattern, tokens, tokens, key_special=flags)
    assert close(m["sink"][0, 0], (1.0 + 0.6 + 0.75 + 1.0) / 4)  # every row sees a special key
    # kept rows renormalised: a -> [0.25, 0.75] over (a, b), b -> [1.0, 0.0]
    assert close(m["next_token"][0, 0], 0.75)
    assert close(m["previous_token"][0, 0], 1.0)
    assert close(m["self"][0, 0], (0.25 + 0.0) / 2)
    assert close(m["distance"][0, 0], (0.75 + 1.0) / 2)
    assert close(m["first_token"][0, 0], (1.0 + 0.6 + 0.5 + 0.0) / 4)  # raw: [CLS] is key 0
    assert torch.isnan(m["duplicate_token"]).all() and torch.isnan(m["induction"]).all()


def test_a_row_with_almost_nothing_left_is_left_out():
    tokens, flags = ["[CLS]", "a", "b"], [True, False, False]
    pattern = torch.tensor([[[[1.0, 0.0, 0.0], [0.995, 0.001, 0.004], [0.5, 0.1, 0.4]]]])
    m = head_metrics(pattern, tokens, tokens, key_special=flags)
    assert close(m["self"][0, 0], 0.4 / 0.5)  # row a kept 0.005 < MIN_KEPT: only row b counts
    assert torch.isnan(m["next_token"]).all()  # only row a had a next token
    pattern[0, 0, 1] = torch.tensor([0.98, 0.005, 0.015])  # now it keeps 0.02
    m = head_metrics(pattern, tokens, tokens, key_special=flags)
    assert close(m["self"][0, 0], (0.25 + 0.8) / 2) and close(m["next_token"][0, 0], 0.75)


def test_only_special_tokens_gives_null_positional_metrics():
    tokens, flags = ["[CLS]", "[SEP]"], [True, True]
    m = head_metrics(torch.tensor([[[[0.5, 0.5], [0.2, 0.8]]]]), tokens, tokens, key_special=flags)
    assert close(m["sink"][0, 0], 1.0) and close(m["first_token"][0, 0], 0.35)
    for name in METRICS:
        if name not in ("sink", "first_token", "last_token", "confidence"):
            assert torch.isnan(m[name]).all(), name


def test_induction_is_null_for_an_aba_repeat():
    # "he said it was it .": the earlier "it" is followed by "was", the query's own previous token.
    tokens = ["[CLS]", "he", "said", "it", "was", "it", ".", "[SEP]"]
    flags = [False] * 8
    flags[0] = flags[-1] = True
    A = random_pattern(np.random.default_rng(5), 1, 4, 8, 8, False)
    m = head_metrics(torch.tensor(A, dtype=torch.float32), tokens, tokens, key_special=flags)
    assert torch.isnan(m["induction"]).all()
    assert not torch.isnan(m["duplicate_token"]).any()  # the second "it" has an earlier occurrence
    assert_matches_reference(A, tokens, tokens, k_special=flags)


def test_duplicate_token_by_hand():
    tokens = ["x", "y", "x", "z", "x"]
    # query 2 ("x"): earlier key 0; query 4: earlier keys 0 and 2. Self is never a target.
    rows = [[0.2] * 5, [0.2] * 5, [0.7, 0.1, 0.2, 0.0, 0.0], [0.2] * 5, [0.1, 0.0, 0.3, 0.0, 0.6]]
    m = head_metrics(torch.tensor([[rows]]), tokens, tokens)
    assert close(m["duplicate_token"][0, 0], (0.7 + 0.4) / 2)
    m = head_metrics(torch.tensor([[rows]]), ["a", "b", "c", "d", "e"], ["a", "b", "c", "d", "e"])
    assert torch.isnan(m["duplicate_token"]).all()


def test_special_flags_are_checked():
    with pytest.raises(ValueError, match="special flags"):
        head_metrics(PATTERN, TOKENS, TOKENS, key_special=[True, False])
    with pytest.raises(ValueError, match="must equal"):
        head_metrics(PATTERN, TOKENS, TOKENS, query_special=[True, False, False], key_special=[False, False, False])


def test_a_causal_self_head_on_a_text_ending_in_a_mark_is_no_punctuation_or_last_token_head():
    # The SmolLM2 finding: a head whose every row looks at itself, on a text whose last token is ".", was labelled
    # punctuation and last_token because the last row is a "." and the last key; it is a self head.
    tokens = ["The", "cat", "sat", "."]
    pattern = torch.eye(4)[None, None]  # (1, 1, 4, 4): every query on itself
    m = head_metrics(pattern, tokens, tokens, causal=True)
    assert close(m["self"][0, 0], 1.0)
    assert torch.isnan(m["punctuation"]).all()  # no row sees a "." other than itself: undefined, not the self weight
    assert torch.isnan(m["last_token"]).all()
