"""Per-head numbers computed from attention patterns: pure functions, no model, no HTTP.

`head_metrics` summarises every head of one attention kind at once; `head_distances` and
`cluster_order` compare heads with each other. Formulas, edge cases and caveats are in
docs/metrics.md; the one-line definitions below are what the API schema shows.

Legend: L layers, H heads, N heads of all layers flattened, Tq query tokens, Tk key tokens,
i query position, j key position, A one head's pattern (weights after softmax, rows = queries),
q and k the non-special query and key tokens, R the rows of A over them, renormalised.

Attention sinks. Most heads of an encoder park much of their weight on special tokens ([CLS],
[SEP]); measured on raw rows, every positional metric of such a head is small, whatever it does
with the rest. So the weight on special keys is its own metric, `sink`, and every other metric
but `first_token`, `last_token` and `confidence` (which keep the raw pattern) is computed on R:
rows of special queries are left out, special keys are removed, each remaining row is divided by
what it kept, and a row that kept less than MIN_KEPT of its weight is left out (it says nothing
about the rest). Positions i, j then count the non-special tokens only. This is the page's
"hide special tokens" view (static/js/lib/views.js), with the same MIN_KEPT.

Which rows count. A metric that measures the weight on some target keys (the previous token,
punctuation, an earlier occurrence, ...) averages over the rows that have at least one target
key; when no row has, the metric is undefined and is NaN (the API sends null). In self-attention
a query is never its own target for `punctuation` and `last_token`: a row's weight on itself is
`self` (measured on SmolLM2, the last row's weight on itself made `punctuation` and `last_token`
label 45 and 21 heads of 270 that were self heads, correlation 0.9994). Causal self-attention
(query i sees keys j <= i) therefore has no `next_token` and no `last_token` (only the last
row sees the last key, and that key is the row itself). Cross-attention (queries and keys from two different sequences)
has no meaningful |i - j|, so `distance`, `previous_token`, `next_token`, `self`,
`duplicate_token` and `induction` are NaN there.
"""

import math

import torch

METRICS = (
    "sink",
    "entropy",
    "entropy_normalized",
    "distance",
    "previous_token",
    "next_token",
    "self",
    "duplicate_token",
    "induction",
    "punctuation",
    "first_token",
    "last_token",
    "confidence",
)

METRIC_DEFINITIONS = {
    "sink": "Raw pattern: mean over queries that can see a special key of the weight on special keys ([CLS], [SEP], BOS, EOS). Null if there are none.",
    "entropy": "Special keys removed, rows renormalised: mean over queries of -sum_j R[i,j] ln R[i,j], in nats.",
    "entropy_normalized": "Special keys removed, rows renormalised: mean over queries with 2+ visible keys of row entropy / ln(visible keys); 0 = one key, 1 = uniform.",
    "distance": "Special keys removed, rows renormalised: mean over queries of sum_j R[i,j] |i - j|, in positions among non-special tokens. Null for cross-attention.",
    "previous_token": "Special keys removed, rows renormalised: mean over queries i >= 1 of R[i, i-1], the weight on the token just before. Null for cross-attention.",
    "next_token": "Special keys removed, rows renormalised: mean over queries i <= T-2 of R[i, i+1], the weight on the token just after. Null when causal or cross.",
    "self": "Special keys removed, rows renormalised: mean over queries of R[i, i], the weight a token puts on itself. Null for cross-attention.",
    "duplicate_token": "Special keys removed, rows renormalised: over queries whose token occurred earlier, the weight on those earlier occurrences (self excluded). Null if no token repeats.",
    "induction": "Special keys removed, rows renormalised: over queries i whose token occurred at i' < i-2, the weight on keys j = i'+1 (never i-1 or i). Null if there are none.",
    "punctuation": "Special keys removed, rows renormalised: mean over queries that can see one of them (other than the query itself) of the weight on keys . , ; : ! ? Null if there are none.",
    "first_token": "Raw pattern: mean over queries of A[i, 0], the weight on the first key (e.g. [CLS] or BOS).",
    "last_token": "Raw pattern: mean over queries that can see it, other than the last key itself, of A[i, Tk-1], the weight on the last key (e.g. [SEP] or EOS). Null when causal.",
    "confidence": "Raw pattern: mean over queries of max_j A[i,j], the weight on the single most attended key.",
}

# Metrics measured on the rows with special keys removed and renormalised (all but the raw three and sink).
RENORMALISED = tuple(name for name in METRICS if name not in ("sink", "first_token", "last_token", "confidence"))
# What each metric is computed on, as data: "raw" (the pattern as the model made it) or "renormalised" (special
# keys removed, each row rescaled to sum to 1); published with the definitions in GET /api/models.
METRICS_ABOUT = {name: {"basis": "renormalised" if name in RENORMALISED else "raw", "description": METRIC_DEFINITIONS[name]}
                 for name in METRICS}
MIN_KEPT = 0.01  # a row keeping less than this weight once special keys are removed is left out (as views.js)

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


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over the last axis where mask is True; NaN where it is True nowhere. (..., n) -> (...)"""
    mask = mask.expand_as(x)  # (..., n)
    count = mask.sum(-1)  # (...)
    total = torch.where(mask, x, 0.0).sum(-1)  # (...): where, not product, so NaN or inf outside the mask stay out
    return torch.where(count > 0, total / count.clamp(min=1), math.nan)


def kept_keys(key_special: list[bool] | None, num_keys: int) -> int:
    """How many keys the renormalised metrics keep: the non-special ones (the `num_tokens` of the roles)."""
    return num_keys if key_special is None else sum(not s for s in key_special)


def head_metrics(
    pattern: torch.Tensor,
    query_tokens: list[str],
    key_tokens: list[str],
    causal: bool = False,
    same_sequence: bool | None = None,
    query_special: list[bool] | None = None,
    key_special: list[bool] | None = None,
) -> dict[str, torch.Tensor]:
    """Every metric of METRICS for every head: a dict name -> (L, H) float32 tensor, NaN where undefined.

    pattern: (L, H, Tq, Tk), rows are queries and sum to 1 over their visible keys; weights on
        hidden keys must be 0 (as softmax makes them), they are not masked again here.
    causal: query i sees keys j <= i only (a decoder's masked self-attention); needs Tq == Tk.
    same_sequence: whether queries and keys are positions of one sequence (self-attention), so
        that i and j can be compared. Default: True exactly when query_tokens == key_tokens.
        Pass False for cross-attention whose two token lists happen to be equal.
    query_special, key_special: True where a token is a special token ([CLS], [SEP], BOS, EOS).
        None: none is. For self-attention query_special defaults to key_special and must equal it.
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
    key_special = [False] * Tk if key_special is None else [bool(s) for s in key_special]
    if query_special is None:
        query_special = key_special if same_sequence else [False] * Tq
    query_special = [bool(s) for s in query_special]
    if (len(query_special), len(key_special)) != (Tq, Tk):
        raise ValueError(f"pattern is {Tq}x{Tk} but there are {len(query_special)} query and {len(key_special)} key special flags")
    if same_sequence and query_special != key_special:
        raise ValueError("self-attention has one sequence: query_special must equal key_special")

    A = pattern.detach().to(torch.float32)  # (L, H, Tq, Tk)
    nan = torch.full((L, H), math.nan)  # (L, H)
    q_pos = torch.arange(Tq)  # (Tq,)
    k_pos = torch.arange(Tk)  # (Tk,)
    visible = k_pos[None, :] <= q_pos[:, None] if causal else torch.ones(Tq, Tk, dtype=torch.bool)  # (Tq, Tk)
    out: dict[str, torch.Tensor] = {}

    # Raw pattern, every row: the first and last key, and the largest weight.
    out["first_token"] = mean_or_nan(A[..., 0])  # (L, H, Tq); every row sees key 0
    # last_token: rows that see key Tk-1, other than that key's own row (self-attention: its weight on itself is `self`)
    sees_last = visible[:, -1] & ((q_pos != Tk - 1) if same_sequence else True)  # (Tq,)
    out["last_token"] = mean_or_nan(A[..., sees_last, Tk - 1])  # (L, H, rows that see key Tk-1)
    out["confidence"] = mean_or_nan(A.amax(-1))  # (L, H, Tq) -> (L, H)

    # Sink: weight on special keys, over the rows that can see one (every row, as first_token: so a head
    # whose first_token passes a threshold passes it in sink too when the first key is special).
    q_special = torch.tensor(query_special, dtype=torch.bool)  # (Tq,)
    k_special = torch.tensor(key_special, dtype=torch.bool)  # (Tk,)
    sees_special = (visible & k_special).any(-1)  # (Tq,)
    on_special = A @ k_special.float()  # (L, H, Tq, Tk) @ (Tk,) -> (L, H, Tq)
    out["sink"] = masked_mean(on_special, sees_special) if sees_special.any() else nan.clone()

    # Everything else: special queries and keys removed, rows renormalised (R), positions among the rest.
    qi = (~q_special).nonzero().flatten()  # (q,) original positions of the kept queries
    kj = (~k_special).nonzero().flatten()  # (k,) and keys
    if len(qi) == 0 or len(kj) == 0:
        out.update({name: nan.clone() for name in RENORMALISED})
    else:
        out.update(renormalised_metrics(A, qi, kj, [key_tokens[j] for j in kj], visible[qi][:, kj], causal,
                                        same_sequence))
    return {name: out[name] for name in METRICS}


def kept_part(a: torch.Tensor, qi: torch.Tensor, kj: torch.Tensor) -> torch.Tensor:
    """a (..., Tq, Tk) at rows qi and columns kj: a view when both are runs of positions (specials only at the
    ends, the usual case), else a copy. -> (..., q, k)"""
    q0, q1, k0, k1 = int(qi[0]), int(qi[-1]), int(kj[0]), int(kj[-1])
    rows = a[..., q0 : q1 + 1, :] if q1 - q0 + 1 == len(qi) else a.index_select(-2, qi)
    return rows[..., k0 : k1 + 1] if k1 - k0 + 1 == len(kj) else rows.index_select(-1, kj)


CHUNK = 1 << 22  # weights per block of layers in renormalised_metrics: 16 MB temporaries, all layers of short texts


def renormalised_metrics(A: torch.Tensor, qi: torch.Tensor, kj: torch.Tensor, key_tokens: list[str],
                         visible: torch.Tensor, causal: bool, same_sequence: bool) -> dict[str, torch.Tensor]:
    """The RENORMALISED metrics of A (L, H, Tq, Tk) at kept rows qi (q,) and keys kj (k,); key_tokens: the k
    kept keys' tokens; visible (q, k).

    R = K / m with K the kept part and m its row sums is never built: every row statistic but the entropy is
    linear in the row, so it is computed on K and divided by m, and the entropy is
    -Σ R ln R = -(Σ K ln K) / m + ln m.
    """
    L, H = A.shape[:2]
    q, k = len(qi), len(kj)
    nan = torch.full((L, H), math.nan)  # (L, H)
    n_visible = visible.sum(-1)  # (q,)
    qp, kp = torch.arange(q), torch.arange(k)  # (q,), (k,) positions among the non-special tokens

    # Targets of the token-matching metrics (self-attention only: q == k, one token list), as (row, key) pairs.
    punct = torch.tensor([is_punctuation(t) for t in key_tokens], dtype=torch.float32)  # (k,)
    own = (qp[:, None] == kp[None, :]) if same_sequence else torch.zeros(q, k, dtype=torch.bool)  # (q, k): j is i
    sees_punct = (visible & punct.bool() & ~own).any(-1)  # (q,): a punctuation key other than the query itself
    own_punct = punct[:q] if same_sequence else torch.zeros(q)  # (q,): the query is itself a mark
    if same_sequence:
        ids: dict[str, int] = {}
        tok = torch.tensor([ids.setdefault(t, len(ids)) for t in key_tokens])  # (k,)
        same = tok[None, :] == tok[:, None]  # (q, k): token j is token i
        duplicate = same & (kp[None, :] < qp[:, None])  # (q, k): an earlier occurrence, j < i
        induction = torch.zeros(q, k, dtype=torch.bool)  # (q, k): j = i' + 1 with token i' = token i, i' <= i - 3
        induction[:, 1:] = (same & (kp[None, :] <= qp[:, None] - 3))[:, :-1]
        pairs = {"duplicate": duplicate.nonzero(as_tuple=True), "induction": induction.nonzero(as_tuple=True)}
        offset = (qp[:, None] - kp[None, :]).abs().float()  # (q, k), |i - j|

    # Row statistics of K, a block of layers at a time: (l, H, q, k) temporaries stay under CHUNK weights.
    tiny = torch.finfo(torch.float32).tiny  # 0 · ln(tiny) = 0: the convention 0 · ln 0 = 0
    names = ("mass", "k_log_k", "punctuation", "distance", "duplicate", "induction", "previous", "self", "next")
    rows = {name: torch.zeros(L, H, q) for name in names}  # row sums of K times a weight (previous: rows 1..q-1 used)
    step = max(1, CHUNK // (H * q * k))
    for start in range(0, L, step):
        block = slice(start, start + step)
        K = kept_part(A[block], qi, kj)  # (l, H, q, k)
        rows["mass"][block] = K.sum(-1)  # (l, H, q)
        rows["k_log_k"][block] = K.clamp(min=tiny).log().mul_(K).sum(-1)  # (l, H, q)
        rows["punctuation"][block] = K @ punct  # (l, H, q)
        if same_sequence:  # less the row's weight on itself where it is a mark
            rows["punctuation"][block] -= K.diagonal(dim1=-2, dim2=-1) * own_punct  # (l, H, q)
        if same_sequence:
            rows["distance"][block] = (K * offset).sum(-1)  # (l, H, q)
            for name, (i, j) in pairs.items():  # (P,), (P,): few pairs, gathered
                rows[name][block].index_add_(-1, i, K[..., i, j])  # (l, H, q)
            rows["previous"][block, :, 1:] = K.diagonal(offset=-1, dim1=-2, dim2=-1)  # (l, H, q-1): R[i, i-1]
            rows["self"][block] = K.diagonal(dim1=-2, dim2=-1)  # (l, H, q)
            rows["next"][block, :, :-1] = K.diagonal(offset=1, dim1=-2, dim2=-1)  # (l, H, q-1): R[i, i+1]
    mass = rows["mass"]  # (L, H, q)
    kept = mass >= MIN_KEPT  # (L, H, q) rows that count
    m = torch.where(kept, mass, 1.0)  # (L, H, q), divisor of the rows that count
    share = {name: rows[name] / m for name in names[2:]}  # (L, H, q) each: row statistics of R
    entropy = -rows["k_log_k"] / m + m.log()  # (L, H, q)

    out = {
        "entropy": masked_mean(entropy, kept),  # (L, H)
        "entropy_normalized": masked_mean(entropy / n_visible.float().log(), kept & (n_visible > 1)),
        "punctuation": masked_mean(share["punctuation"], kept & sees_punct) if sees_punct.any() else nan.clone(),
    }
    if not same_sequence:
        out.update({name: nan.clone() for name in ("distance", "previous_token", "next_token", "self",
                                                   "duplicate_token", "induction")})
        return out
    out["distance"] = masked_mean(share["distance"], kept)
    out["previous_token"] = masked_mean(share["previous"], kept & (qp >= 1))
    out["self"] = masked_mean(share["self"], kept)
    # Causal: the key after i is always hidden.
    out["next_token"] = nan.clone() if causal else masked_mean(share["next"], kept & (qp <= q - 2))
    out["duplicate_token"] = masked_mean(share["duplicate"], kept & duplicate.any(-1))
    out["induction"] = masked_mean(share["induction"], kept & induction.any(-1))
    return out


def head_affinity(patterns: torch.Tensor) -> torch.Tensor:
    """Sum over query rows of the Bhattacharyya coefficient Σ_k sqrt(p_k q_k) of every two heads. (N, Tq, Tk) -> (N, N)

    One matrix product S Sᵀ, S = sqrt(pattern) flattened to Tq · Tk numbers per head; float64.
    head_distances divides it by Tq; a corpus adds it up over sentences and divides by all their rows.
    """
    if patterns.dim() != 3:
        raise ValueError(f"patterns must be (heads, query_pos, key_pos), got shape {tuple(patterns.shape)}")
    N, Tq, Tk = patterns.shape
    S = patterns.detach().to(torch.float32).clamp(min=0).sqrt().reshape(N, Tq * Tk)  # (N, Tq·Tk)
    return (S @ S.T).double()  # (N, N)


def distances_from_affinity(affinity: torch.Tensor, rows: int) -> torch.Tensor:
    """Hellinger distance D = sqrt(1 - affinity / rows), clamped to [0, 1], zero diagonal. (N, N) -> (N, N) float32"""
    dist = (1.0 - affinity / rows).clamp(0.0, 1.0).sqrt()  # (N, N)
    dist.fill_diagonal_(0.0)
    return dist.to(torch.float32)


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
    Over a corpus, the same root mean square runs over every row of every sentence (headscope/analyses/heads.py).
    """
    return distances_from_affinity(head_affinity(patterns), patterns.shape[1])


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
