"""Ablation and importance in a notebook, with the metric choice of the API (headscope/models/metric_choice.py).

    from headscope.notebook import ablate, importance
    effect = ablate("k#9Qz.m>Ab k#9Qz.m>Ab", ["decoder:1:1"], model="induction", metric="loss", span=(12, 22))
    effect["metric"]["change"]                           # the loss over tokens [12, 22) with L1H1 off, minus without
    ranked = importance(model="induction", metric="logit_diff", answer="b", wrong="Y", texts=["k#9Qz.m>Ab k#9Qz.m>A"])
    ranked["importance"]["decoder"]                      # [layer][head], as POST /api/importance answers

Both answer what the API answers (`effect` of POST /api/attention with `ablate`; POST /api/importance's result):
the same dictionaries, with the same descriptions of what each number is. Heads are "KIND:LAYER:HEAD" strings (the
page's URL form) or (kind, layer, head) tuples.
"""

from collections.abc import Iterable

from headscope.models.analysis import AttentionModel
from headscope.models.interventions import Ablation, AblationMode
from headscope.models.metric_choice import choose_metric
from headscope.models.registry import ModelSpec
from headscope.notebook.show import DEFAULT_MODEL, get_model


def as_heads(heads: Iterable[str | tuple[str, int, int]]) -> tuple[tuple[str, int, int], ...]:
    """"encoder:2:5" strings or (kind, layer, head) tuples -> (kind, layer, head) tuples; ValueError names a bad one."""
    out = []
    for head in heads:
        if isinstance(head, str):
            kind, *numbers = head.split(":")
            if len(numbers) != 2 or not kind or not all(n.isdigit() for n in numbers):
                raise ValueError(f"head {head!r} is not KIND:LAYER:HEAD, e.g. encoder:2:5")
            head = (kind, int(numbers[0]), int(numbers[1]))
        kind, layer, number = head
        out.append((str(kind), int(layer), int(number)))
    return tuple(out)


def ablate(text: str, heads: Iterable[str | tuple[str, int, int]], *,
           model: str | ModelSpec | AttentionModel = DEFAULT_MODEL, ablation: AblationMode = "zero",
           metric: str | None = None, span: tuple[int, int] | None = None, answer: str | None = None,
           wrong: str | None = None) -> dict:
    """What knocking out `heads` changes on `text`: the `effect` of POST /api/attention with `ablate` (its
    `measures` say what each number is; with `metric`, `effect["metric"]` has it before, after and the change).
    Raises BadAblation / BadMetric (ValueErrors) naming the problem."""
    m = get_model(model)
    choice = choose_metric(m, metric, span, answer, wrong)
    return m.analyze(text, ablation=Ablation(as_heads(heads), ablation, choice)).effect


def importance(texts: list[str] | None = None, *, model: str | ModelSpec | AttentionModel = DEFAULT_MODEL,
               ablation: AblationMode = "zero", metric: str | None = None, span: tuple[int, int] | None = None,
               answer: str | None = None, wrong: str | None = None, progress: bool = True) -> dict:
    """Each head's importance and the pruning curve, as POST /api/importance answers (docs/importance.md); texts None:
    the model's own set. progress: a tqdm bar while it runs."""
    from tqdm.auto import tqdm

    from headscope.analyses.importance import head_importance

    m = get_model(model)
    choice = choose_metric(m, metric, span, answer, wrong)
    with tqdm(unit=" evaluations", disable=not progress) as bar:
        def step(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        return head_importance(m, ablation, texts, step, metric=choice)
