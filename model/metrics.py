"""Per-head numbers computed from attention patterns: pure functions, no model, no HTTP.

`head_metrics` summarises every head of one attention kind at once; `head_distances` and
`cluster_order` compare heads with each other. Formulas, edge cases and caveats are in
docs/metrics.md; the one-line definitions below are what the API schema shows.

Legend: L layers, H heads, N heads of all layers flattened, Tq query tokens, Tk key tokens,
i query position, j key position, A one head's pattern (weights after softmax, rows = queries).

Which rows count. A metric that measures the weight on some target keys (the previous token,
the first token, punctuation, ...) averages over the rows that can see at least one of its
target keys; when no row can, the metric is undefined and is NaN (the API sends null).
Causal self-attention (query i sees keys j <= i) therefore has no `next_token`, and its
`last_token` is measured on the last row only. Cross-attention (queries and keys from two
different sequences) has no meaningful |i - j|, so `distance`, `previous_token`,
`next_token`, `self` and `induction` are NaN there.
"""

import math

import torch

METRICS = (
    "entropy",
    "entropy_normalized",
    "distance",
    "previous_token",
    "next_token",
    "self",
    "first_token",
    "last_token",
    "punctuation",
    "confidence",
    "induction",
)

METRIC_DEFINITIONS = {
    "entropy": "Mean over queries of the row's entropy -sum_j A[i,j] ln A[i,j], in nats.",
    "entropy_normalized": "Mean over queries with 2+ visible keys of row entropy / ln(visible keys): 0 = one key, 1 = uniform.",
    "distance": "Mean over queries of sum_j A[i,j] |i - j|, in positions. Null for cross-attention.",
    "previous_token": "Mean over queries i >= 1 of A[i, i-1], the weight on the token just before. Null for cross-attention.",
    "next_token": "Mean over queries i <= T-2 of A[i, i+1], the weight on the token just after. Null when causal or cross.",
    "self": "Mean over queries of A[i, i], the weight a token puts on itself. Null for cross-attention.",
    "first_token": "Mean over queries of A[i, 0], the weight on the first key (e.g. [CLS] or BOS).",
    "last_token": "Mean over queries that can see it of A[i, Tk-1], the weight on the last key (e.g. [SEP] or EOS).",
    "punctuation": "Mean over queries that can see one of them of the weight on keys . , ; : ! ? Null if the keys have none.",
    "confidence": "Mean over queries of max_j A[i,j], the weight on the single most attended key.",
    "induction": "Over queries whose token occurred earlier at j-1: share of their weight on such keys j. Null if nothing repeats.",
}

PUNCTUATION = frozenset(".,;:!?")
WORD_MARKERS = ("##", "Ġ", "▁")  # WordPiece continuation, GPT-2 BPE space, SentencePiece space


def is_punctuation(token: str) -> bool:
    """True for a token made only of . , ; : ! ? once a subword marker is stripped ('.', '##.', 'Ġ?', '...')."""
    text = token.strip()
    for marker in WORD_MARKERS:
        if text.startswith(marker):
            text = text[len(marker):]
            break
    return bool(text) and all(c in PUNCTUATION for c in text)


def mean_or_nan(x: torch.Tensor) -> torch.Tensor:
    """Mean over the last axis; NaN where that axis is empty. (..., n) -> (...)"""
    if x.shape[-1] == 0:
        return torch.full(x.shape[:-1], math.nan, dtype=x.dtype)
    return x.mean(-1)


def head_metrics(
    pattern: torch.Tensor,
    query_tokens: list[str],
    key_tokens: list[str],
    causal: bool = False,
    same_sequence: bool | None = None,
) -> dict[str, torch.Tensor]:
    """Every metric of METRICS for every head: a dict name -> (L, H) float32 tensor, NaN where undefined.

    pattern: (L, H, Tq, Tk), rows are queries and sum to 1 over their visible keys; weights on
        hidden keys must be 0 (as softmax makes them), they are not masked again here.
    causal: query i sees keys j <= i only (a decoder's masked self-attention); needs Tq == Tk.
    same_sequence: whether queries and keys are positions of one sequence (self-attention), so
        that i and j can be compared. Default: True exactly when query_tokens == key_tokens.
        Pass False for cross-attention whose two token lists happen to be equal.
    """
    if pattern.dim() != 4:
        raise ValueError(f"pattern must be (layer, head, query_pos, key_pos), got shape {tuple(pattern.shape)}")
    L, H, Tq, Tk = pattern.shape
    if Tq == 0 or Tk == 0:
        raise ValueError("pattern has no query or no key positions")
    if (Tq, Tk) != (len(query_tokens), len(key_tokens)):
        raise ValueError(f"pattern is {Tq}x{Tk} but there are {len(query_tokens)} query and {len(key_tokens)} key tokens")
    if same_sequence is None:
        same_sequence = list(query_tokens) == list(key_tokens)
    if causal and not (same_sequence and Tq == Tk):
        raise ValueError("causal attention is self-attention: it needs the same query and key tokens")

    A = pattern.detach().to(torch.float32)  # (L, H, Tq, Tk)
    nan = torch.full((L, H), math.nan)  # (L, H)
    q_pos = torch.arange(Tq)  # (Tq,)
    k_pos = torch.arange(Tk)  # (Tk,)
    visible = k_pos[None, :] <= q_pos[:, None] if causal else torch.ones(Tq, Tk, dtype=torch.bool)  # (Tq, Tk)
    n_visible = visible.sum(-1)  # (Tq,), i + 1 when causal, else Tk
    offset = (q_pos[:, None] - k_pos[None, :]).abs().float()  # (Tq, Tk), |i - j|
    out: dict[str, torch.Tensor] = {}

    # Row statistics, one layer at a time: (H, Tq, Tk) temporaries stay small and in cache.
    tiny = torch.finfo(torch.float32).tiny  # 0 · ln(tiny) = 0: the convention 0 · ln 0 = 0
    row_entropy = torch.empty(L, H, Tq)  # -Σ_j A ln A
    row_max = torch.empty(L, H, Tq)  # max_j A
    row_distance = torch.empty(L, H, Tq)  # Σ_j A |i - j|
    for layer in range(L):
        a = A[layer]  # (H, Tq, Tk)
        row_entropy[layer] = -a.clamp(min=tiny).log_().mul_(a).sum(-1)  # (H, Tq)
        row_max[layer] = a.amax(-1)  # (H, Tq)
        row_distance[layer] = (a * offset).sum(-1)  # (H, Tq)

    # Spread: entropy of each row, raw and divided by its maximum ln(visible keys).
    out["entropy"] = mean_or_nan(row_entropy)  # (L, H)
    choice = n_visible > 1  # (Tq,) rows with a single visible key have no choice: left out
    out["entropy_normalized"] = mean_or_nan(row_entropy[..., choice] / torch.log(n_visible[choice].float()))  # (L, H)
    out["confidence"] = mean_or_nan(row_max)  # (L, H)

    # Positions: only meaningful when i and j index one sequence.
    if same_sequence:
        out["distance"] = mean_or_nan(row_distance)  # (L, H)
        out["previous_token"] = mean_or_nan(A.diagonal(offset=-1, dim1=-2, dim2=-1))  # (L, H, T-1): rows i >= 1
        if causal:  # the key after i is always hidden
            out["next_token"] = nan.clone()
        else:
            out["next_token"] = mean_or_nan(A.diagonal(offset=1, dim1=-2, dim2=-1))  # (L, H, T-1): rows i <= T-2
        out["self"] = mean_or_nan(A.diagonal(dim1=-2, dim2=-1))  # (L, H, T)
    else:
        for name in ("distance", "previous_token", "next_token", "self"):
            out[name] = nan.clone()

    # Sinks: weight on the first and on the last key, over the rows that can see that key.
    out["first_token"] = mean_or_nan(A[..., 0])  # (L, H, Tq); every row sees key 0
    out["last_token"] = mean_or_nan(A[..., visible[:, -1], Tk - 1])  # (L, H, rows that see key Tk-1)

    # Punctuation: weight on punctuation keys, over the rows that can see at least one.
    punct = torch.tensor([is_punctuation(t) for t in key_tokens], dtype=torch.bool)  # (Tk,)
    sees_punct = (visible & punct).any(-1)  # (Tq,)
    if sees_punct.any():
        mass = A[..., punct].sum(-1)  # (L, H, Tq, n_punct) -> (L, H, Tq)
        out["punctuation"] = mean_or_nan(mass[..., sees_punct])  # (L, H)
    else:
        out["punctuation"] = nan.clone()

    # Induction: query token i appeared before, at key position j-1 < i; the target is key j.
    out["induction"] = nan.clone()
    if same_sequence and Tk > 1:
        ids: dict[str, int] = {}
        key_ids = torch.tensor([ids.setdefault(t, len(ids)) for t in key_tokens])  # (Tk,)
        query_ids = torch.tensor([ids.setdefault(t, len(ids)) for t in query_tokens])  # (Tq,)
        earlier = k_pos[None, :-1] < q_pos[:, None]  # (Tq, Tk-1), j-1 < i
        M = (key_ids[None, :-1] == query_ids[:, None]) & earlier  # (Tq, Tk-1), M[i, j-1]: key j is a target
        qi, kj = M.nonzero(as_tuple=True)  # (P,), (P,): the target pairs (i, j-1)
        if len(qi):
            rows = M.any(-1)  # (Tq,) queries with at least one target
            on_target = A[..., qi, kj + 1].sum(-1)  # (L, H), Σ A∘M
            on_rows = A.sum(-1)[..., rows].sum(-1)  # (L, H), Σ A over those rows
            out["induction"] = on_target / on_rows

    return {name: out[name] for name in METRICS}


def head_distances(patterns: torch.Tensor) -> torch.Tensor:
    """Hellinger distance between every two heads, over all their query rows. (N, Tq, Tk) -> (N, N)

    For one query row, the Hellinger distance between distributions p and q is
        H(p, q) = sqrt(1 - Σ_k sqrt(p_k q_k)) = ||sqrt(p) - sqrt(q)|| / sqrt(2),   in [0, 1].
    Two heads are compared by the root mean square of H over their Tq rows:
        D(a, b) = sqrt(1 - <S_a, S_b> / Tq),   S_a = sqrt(pattern_a) flattened to Tq · Tk numbers,
    so every pair comes from one matrix product S Sᵀ, and D is a Euclidean distance between the
    vectors S / sqrt(2 Tq): a true metric, 0 for identical heads, 1 for heads with disjoint rows.
    (Jensen–Shannon needs a logarithm per pair, row and key: 0.6–1.0 s at 512 tokens, more than
    the forward pass; this is one matmul.) Rows must be distributions: cut padding rows off first.
    """
    if patterns.dim() != 3:
        raise ValueError(f"patterns must be (heads, query_pos, key_pos), got shape {tuple(patterns.shape)}")
    N, Tq, Tk = patterns.shape
    S = patterns.detach().to(torch.float32).clamp(min=0).sqrt().reshape(N, Tq * Tk)  # (N, Tq·Tk)
    affinity = (S @ S.T).double() / Tq  # (N, N), mean over rows of the Bhattacharyya coefficient
    dist = (1.0 - affinity).clamp(0.0, 1.0).sqrt()  # (N, N)
    dist.fill_diagonal_(0.0)
    return dist.to(torch.float32)  # (N, N)


def cluster_order(distances: torch.Tensor) -> list[int]:
    """Heads in the leaf order of average-linkage clustering of `distances` (N, N), alike heads adjacent.

    scipy.cluster.hierarchy.linkage(method="average", optimal_ordering=True) on the condensed
    matrix; optimal ordering also flips subtrees so that neighbours in the list are close.
    Distances must be finite.
    """
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    if distances.dim() != 2 or distances.shape[0] != distances.shape[1]:
        raise ValueError(f"distances must be square (N, N), got shape {tuple(distances.shape)}")
    D = distances.detach().to(torch.float64)  # (N, N)
    N = D.shape[0]
    if N <= 2:
        return list(range(N))
    D = (D + D.T) / 2  # (N, N), exactly symmetric for squareform
    D.fill_diagonal_(0.0)
    condensed = squareform(D.numpy(), checks=False)  # (N(N-1)/2,)
    tree = linkage(condensed, method="average", optimal_ordering=True)
    return [int(i) for i in leaves_list(tree)]
