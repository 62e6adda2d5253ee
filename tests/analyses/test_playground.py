"""headscope/analyses/playground.py and POST /api/mha: the nn.MultiheadAttention playground.

The presets give PyTorch docs' shapes; over a hypothesis sample of valid configurations PyTorch and
our attention (or the textbook steps, for options ours lacks) agree to 1e-5, with random biases too;
the returned code, run, reproduces the answer; every broken rule is a 422 naming it, never a 5xx.
"""

import contextlib
import io
from dataclasses import asdict, replace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import headscope.analyses.playground as mha_module
from headscope.analyses.playground import (
    IN_WORDS,
    LIMITS,
    OURS,
    PRESETS,
    TEXTBOOK,
    InvalidConfig,
    MHAConfig,
    build,
    check,
    module_kwargs,
    run,
    second_opinion,
)

TOL = 1e-5


def expected_shapes(c: MHAConfig):
    """Output and weights shapes from PyTorch's documentation of nn.MultiheadAttention.forward."""
    S = c.S + c.add_bias_kv + c.add_zero_attn
    output = [c.N, c.L, c.embed_dim] if c.batch_first else [c.L, c.N, c.embed_dim]
    if not c.need_weights:
        return output, None
    return output, [c.N, c.L, S] if c.average_attn_weights else [c.N, c.num_heads, c.L, S]


# ---- presets ------------------------------------------------------------------------------------------------


def test_presets_are_the_docs_three_shapes(client):
    body = client.get("/api/mha/presets").json()
    assert [p["name"] for p in body["presets"]] == [p.name for p in PRESETS]
    assert body["limits"] == asdict(LIMITS)
    shapes = []
    for preset in body["presets"]:
        r = client.post("/api/mha", json=preset["config"])
        assert r.status_code == 200, r.text
        answer = r.json()
        shapes.append(answer["output_shape"])
        assert answer["max_abs_diff"] < TOL
        assert [answer["output_shape"], answer["weights_shape"]] == list(expected_shapes(MHAConfig.make(**preset["config"])))
    assert shapes == [[10, 2, 64], [5, 3, 128], [6, 4, 32]]


def test_presets_use_both_second_implementations():
    assert {run(p.config)["compared_with"] for p in PRESETS} == {OURS, TEXTBOOK}


# ---- agreement with PyTorch ----------------------------------------------------------------------------------


@st.composite
def configs(draw):
    """Valid configurations, small enough to run many."""
    heads = draw(st.integers(1, 4))
    embed_dim = heads * draw(st.integers(1, 6))
    L, S, N = draw(st.integers(1, 6)), draw(st.integers(1, 6)), draw(st.integers(1, 3))
    mask_kind = draw(st.sampled_from(["none", "lengths", "bools"]))
    mask = None
    if mask_kind == "lengths":
        mask = tuple(draw(st.lists(st.integers(1, S), min_size=N, max_size=N)))
    elif mask_kind == "bools":
        rows = draw(st.lists(st.lists(st.booleans(), min_size=S, max_size=S), min_size=N, max_size=N))
        mask = tuple(tuple(r[:-1]) + (False,) if all(r) else tuple(r) for r in rows)  # keep one key per row
    config = MHAConfig(
        embed_dim=embed_dim, num_heads=heads,
        kdim=draw(st.sampled_from([None, embed_dim, 3, 7])), vdim=draw(st.sampled_from([None, embed_dim, 5])),
        bias=draw(st.booleans()), add_bias_kv=draw(st.booleans()), add_zero_attn=draw(st.booleans()),
        batch_first=draw(st.booleans()), L=L, S=S, N=N, key_padding_mask=mask, causal=draw(st.booleans()),
        need_weights=draw(st.booleans()), average_attn_weights=draw(st.booleans()), seed=draw(st.integers(0, 2**31 - 1)),
    )
    try:
        check(config)
    except InvalidConfig:  # a causal row whose only visible keys are padding: PyTorch would give NaN
        config = replace(config, key_padding_mask=None)
    return config


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_torch_and_ours_agree(config):
    answer = run(config)
    assert answer["max_abs_diff"] < TOL
    assert [answer["output_shape"], answer["weights_shape"]] == list(expected_shapes(config))
    simple = config.Ek == config.Ev == config.embed_dim and not (config.add_bias_kv or config.add_zero_attn)
    assert answer["compared_with"] == (OURS if simple else TEXTBOOK)
    assert answer["key_labels"][config.S:] == config.extra_keys


@settings(max_examples=80, deadline=None)
@given(configs())
def test_agree_with_random_biases(config):
    """PyTorch starts biases at zero; random ones make every bias path count."""
    mha, query, key, value, padding, attn_mask = build(config)
    with torch.no_grad():
        for p in (mha.in_proj_bias, mha.out_proj.bias, mha.bias_k, mha.bias_v):
            if p is not None:
                p.normal_(0, 0.5)
        output, weights = mha(query, key, value, key_padding_mask=padding, attn_mask=attn_mask, need_weights=True,
                              average_attn_weights=False)
    other, pattern, _ = second_opinion(config, mha, query, key, value, padding, attn_mask)
    torch.testing.assert_close(other, output, atol=TOL, rtol=0)
    torch.testing.assert_close(pattern, weights, atol=TOL, rtol=0)


@pytest.mark.parametrize("config", [PRESETS[0].config, PRESETS[1].config])
def test_a_wrong_implementation_is_caught(monkeypatch, config):
    """The difference is measured, not assumed: a small error in either second implementation shows."""
    real_ours, real_textbook = mha_module.ours_from, mha_module.textbook_attention

    def off_ours(mha):
        ours = real_ours(mha)
        with torch.no_grad():
            ours.out_proj.weight[0, 0] += 0.01
        return ours

    def off_textbook(*args, **kwargs):
        output, pattern = real_textbook(*args, **kwargs)
        return output, pattern * 1.001

    monkeypatch.setattr(mha_module, "ours_from", off_ours)
    monkeypatch.setattr(mha_module, "textbook_attention", off_textbook)
    assert run(config)["max_abs_diff"] > 1e-4


# ---- the code --------------------------------------------------------------------------------------------------


CODE_CASES = [p.config for p in PRESETS] + [
    MHAConfig(embed_dim=12, num_heads=3, kdim=5, vdim=7, add_bias_kv=True, add_zero_attn=True, batch_first=True,
              L=3, S=4, N=2, key_padding_mask=((False, True, False, True), (True, False, False, False)), seed=7),
    MHAConfig(embed_dim=8, num_heads=2, bias=False, L=4, S=4, N=1, causal=True, need_weights=False, seed=3),
]


@pytest.mark.parametrize("config", CODE_CASES)
def test_the_code_runs_and_reproduces_the_answer(config):
    answer = run(config)
    namespace = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), torch.random.fork_rng(devices=[]):
        exec(compile(answer["code"], "<playground>", "exec"), namespace)  # noqa: S102 - our own generated code
    output, weights = namespace["attn_output"], namespace["attn_weights"]
    assert list(output.shape) == answer["output_shape"]
    lines = printed.getvalue().splitlines()
    assert lines[0] == f"torch.Size({answer['output_shape']})"
    if answer["weights_shape"] is None:
        assert weights is None and lines[1] == "None" and answer["weights"] is None
    else:
        assert list(weights.shape) == answer["weights_shape"]
        assert torch.equal(weights, torch.from_numpy(answer["weights"]))  # same seed, same draws: every batch element


# ---- refusals -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body,rule", [
    ({"embed_dim": 10, "num_heads": 3}, "embed_dim_divisible_by_num_heads"),
    ({"key_padding_mask": [10]}, "key_padding_mask_shape"),  # N = 2 entries needed
    ({"key_padding_mask": [10, 0]}, "key_padding_mask_shape"),  # a length of 0 leaves no key
    ({"key_padding_mask": [10, 11]}, "key_padding_mask_shape"),  # longer than S
    ({"key_padding_mask": [[False] * 10, [False] * 9]}, "key_padding_mask_shape"),
    ({"key_padding_mask": [[False] * 10, [True] * 10]}, "every_query_sees_a_key"),
    ({"key_padding_mask": [[True] + [False] * 9, [False] * 10], "causal": True}, "every_query_sees_a_key"),
])
def test_broken_rules_are_422_naming_the_rule(client, body, rule):
    r = client.post("/api/mha", json=body)
    assert r.status_code == 422
    assert r.json() == {"error": "invalid_config", "rule": rule, "detail": r.json()["detail"]}


def test_the_appended_keys_keep_every_query_seeing_one(client):
    body = {"key_padding_mask": [[False] * 10, [True] * 10], "add_zero_attn": True}
    assert client.post("/api/mha", json=body).status_code == 200


@pytest.mark.parametrize("name,limit", [
    ("embed_dim", LIMITS.max_embed_dim), ("kdim", LIMITS.max_embed_dim), ("vdim", LIMITS.max_embed_dim),
    ("num_heads", LIMITS.max_heads), ("L", LIMITS.max_length), ("S", LIMITS.max_length), ("N", LIMITS.max_batch),
    ("seed", LIMITS.max_seed),
])
def test_sizes_over_the_limits_are_422(client, name, limit):
    r = client.post("/api/mha", json={name: limit + 1})
    assert r.status_code == 422
    assert f"body.{name}" in r.json()["detail"] and str(limit) in r.json()["detail"]
    with pytest.raises(InvalidConfig, match=f"{name} is {limit + 1}"):  # model/ refuses on its own too
        check(replace(MHAConfig(), **{name: limit + 1}))


def test_the_largest_request_runs(client):
    c = LIMITS
    body = {"embed_dim": c.max_embed_dim, "num_heads": c.max_heads, "vdim": c.max_embed_dim // 2, "add_bias_kv": True,
            "add_zero_attn": True, "L": c.max_length, "S": c.max_length, "N": c.max_batch, "causal": True,
            "average_attn_weights": False}
    r = client.post("/api/mha", json=body)
    assert r.status_code == 200 and r.json()["max_abs_diff"] < TOL
    assert r.json()["weights_shape"] == [c.max_batch, c.max_heads, c.max_length, c.max_length + 2]


small = st.one_of(st.integers(-3, 70), st.none(), st.booleans(), st.text(max_size=3))
masks = st.one_of(st.none(), st.lists(st.integers(-1, 12), max_size=3),
                  st.lists(st.lists(st.booleans(), max_size=11), max_size=3), small)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.fixed_dictionaries({}, optional={
    "embed_dim": small, "num_heads": small, "kdim": small, "vdim": small, "L": small, "S": small, "N": small,
    "key_padding_mask": masks, "causal": small, "need_weights": small, "add_bias_kv": small, "seed": small,
}))
def test_any_body_is_answered_200_or_422(client, body):
    r = client.post("/api/mha", json=body)
    assert r.status_code in (200, 422), r.text
    if r.status_code == 422:
        assert r.json()["error"] in ("invalid_config", "validation_error") and r.json()["detail"]


# ---- every batch element, the parameters and the steps -------------------------------------------------------------


def test_the_answer_holds_every_batch_element_and_its_padding(client):
    """The padded preset through the API: weights of all N elements, a padded key weighs 0 in its own element only."""
    config = next(p.config for p in PRESETS if p.config.key_padding_mask is not None)
    answer = client.post("/api/mha", json=asdict(config)).json()
    weights = torch.tensor(answer["weights"])  # (N, L, S')
    assert list(weights.shape) == answer["weights_shape"] and answer["dims"]["weights"][0] == "batch"
    assert answer["labels"]["batch"] == [str(n) for n in range(config.N)]
    mha = torch.nn.MultiheadAttention(**module_kwargs(config))
    lengths = config.key_padding_mask  # e.g. (7, 5, 3): keys at positions >= length are padding
    assert answer["key_padding"] == [[j >= n for j in range(config.S)] for n in lengths]
    assert answer["dims"]["key_padding"] == ["batch", "key_pos"]
    for b, n in enumerate(lengths):
        assert torch.all(weights[b, :, n:] == 0) and torch.all(weights[b, :, :n] > 0)
    assert any(n < config.S for n in lengths[1:])  # the padding is in a batch element other than 0
    assert mha.embed_dim == answer["sizes"]["E"]


def shape_of(symbols, sizes):
    """["3E", "E"] -> [3 * E, E] from the answer's sizes."""
    out = []
    for s in symbols:
        factor, name = (int(s[0]), s[1:]) if s[0].isdigit() and len(s) > 1 else (1, s)
        out.append(int(name) if name.isdigit() else factor * sizes[name])
    return out


PARAM_CASES = [p.config for p in PRESETS] + [
    MHAConfig(embed_dim=12, num_heads=3, kdim=5, vdim=7, add_bias_kv=True, add_zero_attn=True, L=3, S=4, N=2),
    MHAConfig(embed_dim=8, num_heads=2, bias=False, add_bias_kv=True, L=4, S=4, N=1),
]


@pytest.mark.parametrize("config", PARAM_CASES)
def test_parameter_shapes_are_torch_own(client, config):
    """Every parameter as a module built here (no seed, no playground code) names and shapes it; its symbols read
    [3E, E], [E, E], ... with E, H, D = E / H of the module itself."""
    answer = client.post("/api/mha", json=asdict(config)).json()
    mha = torch.nn.MultiheadAttention(**module_kwargs(config))
    assert [(p["name"], p["shape"]) for p in answer["parameters"]] == [
        (name, list(p.shape)) for name, p in mha.named_parameters()]
    sizes = answer["sizes"]
    assert (sizes["E"], sizes["H"], sizes["D"]) == (mha.embed_dim, mha.num_heads, mha.head_dim)
    assert sizes["D"] == config.embed_dim // config.num_heads
    assert sizes["S'"] == config.S + config.add_bias_kv + config.add_zero_attn
    for p in answer["parameters"]:
        assert shape_of(p["symbols"], sizes) == p["shape"], p["name"]
    by_name = {p["name"]: p["symbols"] for p in answer["parameters"]}
    if config.Ek == config.Ev == config.embed_dim:
        assert by_name["in_proj_weight"] == ["3E", "E"]
    assert by_name["out_proj.weight"] == ["E", "E"]


@settings(max_examples=60, deadline=None)
@given(configs())
def test_the_steps_are_the_computation_and_their_shapes(config):
    """The steps' tensors rebuild torch's own weights and output, and Q per head is the query through W_Q's rows
    (computed here); each step's shape is its symbols read with the sizes."""
    mha, query, key, value, padding, attn_mask = build(config)
    with torch.no_grad():
        output, weights = mha(query, key, value, key_padding_mask=padding, attn_mask=attn_mask, need_weights=True,
                              average_attn_weights=False)  # (L, N, E) or (N, L, E); (N, H, L, S')
        tensors = {}
        second_opinion(config, mha, query, key, value, padding, attn_mask, tensors)
        q_in = query if config.batch_first else query.transpose(0, 1)  # (N, L, E)
        w_q = mha.in_proj_weight[:config.embed_dim] if mha.in_proj_weight is not None else mha.q_proj_weight
        b_q = None if mha.in_proj_bias is None else mha.in_proj_bias[:config.embed_dim]
        D = config.embed_dim // config.num_heads
        q = torch.nn.functional.linear(q_in, w_q, b_q).view(config.N, config.L, config.num_heads, D).transpose(1, 2)
    torch.testing.assert_close(tensors["pattern"], weights, atol=TOL, rtol=0)
    torch.testing.assert_close(tensors["output"], output if config.batch_first else output.transpose(0, 1),
                               atol=TOL, rtol=0)
    torch.testing.assert_close(tensors["q"], q, atol=TOL, rtol=0)
    answer = run(config)
    sizes = answer["sizes"]
    assert [s["name"] for s in answer["steps"]] == ["q", "k", "v", "attn_scores", "pattern", "z", "z_concat", "output"]
    for step in answer["steps"]:
        assert step["shape"] == list(tensors[step["name"]].shape) == shape_of(step["symbols"], sizes)
        assert len(step["dims"]) == len(step["shape"])


def test_the_comparison_is_named_in_words():
    for p in PRESETS:
        answer = run(p.config)
        assert answer["compared_with_words"] == IN_WORDS[answer["compared_with"]]
    assert all("step-by-step" in words and "." not in words.split("(")[0] for words in IN_WORDS.values())
