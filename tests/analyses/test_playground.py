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
    LIMITS,
    OURS,
    PRESETS,
    TEXTBOOK,
    InvalidConfig,
    MHAConfig,
    build,
    check,
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

    def off_textbook(*args):
        output, pattern = real_textbook(*args)
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
        assert weights[0].tolist() == answer["weights"]  # same seed, same draws: the same numbers


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
