"""Role labels for heads: a head gets a role when one of its metrics passes that role's threshold.

A role is a short name for a pattern a reader can check by eye ("previous_token": most of the
head's attention goes to the token just before). A head can have several roles, or none.
Thresholds were chosen on all-MiniLM-L6-v2 (docs/metrics.md, "Roles", says how) and are the
same for every model. Roles of one sentence are anecdotes; roles of corpus averages are evidence.

Every role but `sink`, `first_token` and `last_token` reads metrics computed with the special
keys removed and the rows renormalised (headscope/analyses/metrics.py): a head that parks most of its weight
on [CLS] and sends the rest to the previous token is both a `sink` and a `previous_token` head.
"""

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RoleRule:
    """The head has the role when  value >= threshold,  where value is the sum of `metrics`
    (divided by the token count when `per_token`), unless the head already has a role in `unless`
    or the text has fewer than `min_tokens` tokens. NaN (undefined) terms of the sum count as 0;
    when every term is NaN the head cannot have the role.
    """

    metrics: tuple[str, ...]
    threshold: float
    description: str
    per_token: bool = False
    unless: tuple[str, ...] = ()
    min_tokens: int = 0


ROLE_RULES: dict[str, RoleRule] = {
    "sink": RoleRule(("sink",), 0.5, "at least half of the attention on special tokens ([CLS], [SEP], BOS, EOS)"),
    "first_token": RoleRule(
        ("first_token",), 0.5, "at least half of the attention on the first key, when that is not a special-token sink",
        unless=("sink",),  # with [CLS] or BOS first, a first_token head is a sink head: one label is enough
    ),
    "last_token": RoleRule(
        ("last_token",), 0.5, "at least half of the attention on the last key, when that is not a special-token sink",
        unless=("sink",),
    ),
    "previous_token": RoleRule(("previous_token",), 0.5, "at least half of the attention on the token just before"),
    "next_token": RoleRule(("next_token",), 0.5, "at least half of the attention on the token just after"),
    "self": RoleRule(("self",), 0.5, "at least half of the attention on the query's own token"),
    "duplicate_token": RoleRule(
        ("duplicate_token",), 0.4, "where a token repeats, at least 40% of its attention on its earlier occurrences"
    ),
    "induction": RoleRule(("induction",), 0.5, "where text repeats, at least half of the attention on what followed last time"),
    "punctuation": RoleRule(("punctuation",), 0.3, "at least 30% of the attention on . , ; : ! ? (few keys: far above chance)"),
    "broad": RoleRule(("entropy_normalized",), 0.8, "attention spread widely: row entropy at least 80% of ln(keys)"),
    "local": RoleRule(
        ("previous_token", "self", "next_token"),
        0.5,
        "at least half of the attention within one position (previous + self + next); texts of 12+ tokens",
        min_tokens=12,  # 3 of T keys hold 3/T of uniform attention: 0.25 at T = 12, so 0.5 is twice chance
    ),
    "long_range": RoleRule(
        ("distance",),
        0.4,
        "mean distance at least 0.4 × token count (uniform attention gives about 1/3), and not a first- or last-token head",
        per_token=True,
        unless=("first_token", "last_token"),  # a sink at either end has mean distance ≈ T/2 by construction
    ),
}
ROLES = tuple(ROLE_RULES)


def role_value(rule: RoleRule, metrics: dict[str, torch.Tensor], num_tokens: int) -> torch.Tensor:
    """The number a rule compares with its threshold, for every head: (L, H), NaN where undefined."""
    terms = torch.stack([metrics[name].float() for name in rule.metrics])  # (M, L, H)
    value = terms.nan_to_num(0.0).sum(0)  # (L, H)
    value[terms.isnan().all(0)] = torch.nan
    if rule.per_token:
        value = value / num_tokens
    return value


def role_passes(metrics: dict[str, torch.Tensor], num_tokens: float) -> dict[str, torch.Tensor]:
    """role -> (L, H) bool: which heads have the role. metrics and num_tokens as in head_roles."""
    passes = {  # (L, H) each; NaN fails every threshold
        role: (role_value(rule, metrics, num_tokens) >= rule.threshold) & (num_tokens >= rule.min_tokens)
        for role, rule in ROLE_RULES.items()
    }
    for role, rule in ROLE_RULES.items():  # in order: an `unless` role has had its own exceptions applied
        for other in rule.unless:
            passes[role] = passes[role] & ~passes[other]  # (L, H)
    return passes


def head_roles(metrics: dict[str, torch.Tensor], num_tokens: float) -> list[list[list[str]]]:
    """Roles of every head, indexed [layer][head], each list in the order of ROLES.

    metrics: head_metrics' output (or per-head corpus means), name -> (L, H).
    num_tokens: non-special key tokens of the text (or their mean over a corpus), for per-token rules
        and min_tokens: the renormalised metrics count positions among those (headscope/analyses/metrics.py kept_keys).
    """
    passes = role_passes(metrics, num_tokens)
    L, H = next(iter(metrics.values())).shape
    table = {role: passes[role].tolist() for role in ROLES}  # role -> [layer][head] bools
    return [[[role for role in ROLES if table[role][layer][head]] for head in range(H)] for layer in range(L)]
