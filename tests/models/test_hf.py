"""headscope/models/hf/model.py: local Hugging Face checkpoints of every family, served offline and checked against
transformers run directly on the same text (patterns to 1e-6, tokens, generation).

The checkpoints are tiny random models of every family with tokenizers trained here (tests/checkpoints.py).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers as tf
from fastapi.testclient import TestClient

from headscope.models.analysis import (
    CAUSAL_SELF,
    CROSS,
    DECODER_SELF,
    SELF,
    TooManyTokens,
)
from headscope.models.hf.model import (
    CheckpointError,
    ContinuationTooLong,
    HFModel,
    architecture,
    available_memory,
    check_memory,
    float32_bytes,
    position_limit,
    weight_files,
)
from headscope.models.registry import ModelSpec, load_model
from headscope.server.app import create_app
from headscope.server.settings import Settings
from tests.checkpoints import FAMILIES, POSITIONS, SENTENCES, build, save

ROOT = Path(__file__).parents[2]

TEXT = "The cat sat on the mat, warmly!"
LONG = " ".join(SENTENCES * 3)  # more tokens than any tiny model takes
PROMPT = " ".join(SENTENCES[:2])  # fits GPT-2's 64 positions, but not with 30 more
ENCODERS, DECODERS, ENCODER_DECODERS = ("bert", "distilbert", "roberta"), ("gpt2", "llama"), ("bart", "t5")
ENDS = {  # the special tokens each family's template puts first and last (None: a text token)
    "bert": ("[CLS]", "[SEP]"), "distilbert": ("[CLS]", "[SEP]"), "roberta": ("<s>", "</s>"), "bart": ("<s>", "</s>"),
    "gpt2": (None, None), "llama": ("<s>", None), "t5": (None, "</s>"),
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Models of width 32 gain nothing from threads, and on a busy machine each op's thread handoff
    costs more than the op: this file ran 5-50x slower with two threads while other processes ran."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def built():
    """family -> (tokenizer, transformers model): the originals, run directly as the reference."""
    return {family: build(family) for family in FAMILIES}


@pytest.fixture(scope="session")
def checkpoints(built, tmp_path_factory):
    """family -> checkpoint directory (config.json, model.safetensors, tokenizer.json ...)."""
    root = tmp_path_factory.mktemp("checkpoints")
    return {family: save(root / family, *built[family]) for family in FAMILIES}


@pytest.fixture(scope="session")
def served(checkpoints):
    """family -> the HFModel Headscope serves from that directory."""
    return {family: load_model(ModelSpec(f"tiny-{family}", str(path))) for family, path in checkpoints.items()}


def greedy(tokenizer, model, text: str, n: int) -> list[int]:
    """transformers' own greedy generation: the prompt (decoder-only) or decoder start, then the new tokens."""
    enc = tokenizer(text, return_tensors="pt")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.no_grad():
        return model.generate(**enc, do_sample=False, num_beams=1, max_new_tokens=n, pad_token_id=pad)[0].tolist()


def assert_patterns(actual: torch.Tensor, attentions) -> None:
    expected = torch.stack([a[0] for a in attentions])  # (L, H, Tq, Tk)
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)


def assert_token_fields(analysis, tokenizer, text: str) -> None:
    enc = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    special = [bool(s) for s in enc["special_tokens_mask"]]
    n = len(enc["input_ids"])
    assert analysis.tokens[:n] == enc.tokens()
    assert analysis.special[:n] == special
    assert analysis.offsets[:n] == [None if s else tuple(o) for o, s in zip(enc["offset_mapping"], special)]
    assert analysis.words[:n] == [None if s else w for w, s in zip(enc.word_ids(), special)]


# --- what each family is served as ---------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_is_served_with_its_kinds_limits_and_generation(served, built, family):
    info = served[family].info
    assert (info.layers, info.heads) == (2, 4)
    if family in ENCODERS:
        assert info.kinds == {"encoder": SELF} and info.generation is None
    elif family in DECODERS:
        assert info.kinds == {"decoder": CAUSAL_SELF} and info.generation == "continuation"
        assert info.default_new_tokens == 0 and info.max_new_tokens == POSITIONS - 1
    else:
        assert info.kinds == {"encoder": SELF, "decoder": DECODER_SELF, "cross": CROSS}
        assert info.generation == "output" and (info.default_new_tokens, info.max_new_tokens) == (32, 128)
    assert info.max_tokens == {"bart": 256, "t5": 512}.get(family, POSITIONS)  # T5 has no absolute positions
    assert info.kv_heads == (2 if family == "llama" else None)
    assert type(built[family][1]).__name__ in info.description
    assert "HF_HUB_OFFLINE" in os.environ  # set before transformers is asked for anything: no hub, ever


@pytest.mark.parametrize("family", ENCODERS + DECODERS)
def test_tokens_and_patterns_equal_transformers(served, built, family):
    tokenizer, model = built[family]
    analysis = served[family].analyze(TEXT)
    assert_token_fields(analysis, tokenizer, TEXT)
    first, last = ENDS[family]
    assert analysis.special[0] == (first is not None) and analysis.special[-1] == (last is not None)
    assert (analysis.tokens[0] if first else None, analysis.tokens[-1] if last else None) == (first, last)
    assert analysis.generated is None and analysis.stopped is None and not analysis.truncated
    with torch.no_grad():
        out = model(**tokenizer(TEXT, return_tensors="pt"), output_attentions=True)
    (kind,) = analysis.patterns
    assert_patterns(analysis.patterns[kind], out.attentions)
    assert served[family].count_tokens(TEXT) == len(analysis.tokens)


@pytest.mark.parametrize("family", FAMILIES)
def test_rows_sum_to_one_and_causal_kinds_are_zero_above_the_diagonal(served, family):
    analysis = served[family].analyze(TEXT, new_tokens=3 if family in DECODERS else 5)
    for kind, pattern in analysis.patterns.items():
        torch.testing.assert_close(pattern.sum(-1), torch.ones(pattern.shape[:-1]), atol=1e-5, rtol=0)
        assert pattern.shape[2:] == (len(analysis.axis(analysis.layout[kind].rows)),
                                     len(analysis.axis(analysis.layout[kind].columns)))
        assert bool((pattern.triu(1) == 0).all()) == analysis.layout[kind].causal


def test_llama_has_one_pattern_per_query_head_sharing_key_value_groups(served, built):
    config = built["llama"][1].config
    assert config.num_key_value_heads == 2 < config.num_attention_heads == 4
    info, pattern = served["llama"].info, served["llama"].analyze(TEXT).patterns["decoder"]
    assert (info.heads, info.kv_heads) == (4, 2) and pattern.shape[1] == 4
    assert not torch.allclose(pattern[:, 0], pattern[:, 1])  # heads 0 and 1 share keys, not queries


# --- generation ----------------------------------------------------------------------------------------------

def check_output(analysis, tokenizer, model, text: str, n: int) -> None:
    """An encoder–decoder's answer is transformers' greedy generate and one teacher-forced pass. Decoder
    positions: the start token and every generated token but the last; row i's argmax is output token
    i+1 (as headscope/models/dates.py)."""
    sequence = greedy(tokenizer, model, text, n)  # [start, g1 .. gk]
    made, positions = sequence[1:], sequence[:-1]
    assert analysis.output_tokens == tokenizer.convert_ids_to_tokens(positions)
    assert analysis.output_text == tokenizer.decode(made, skip_special_tokens=True)
    assert analysis.output_special == [i in tokenizer.all_special_ids for i in positions]
    assert analysis.stopped == ("end" if made[-1] == tokenizer.eos_token_id else "length")
    assert analysis.stopped == "end" or len(made) == n
    assert analysis.output_words is None or (
        len(analysis.output_words) == len(positions)
        and all(w is None for w, s in zip(analysis.output_words, analysis.output_special) if s))
    assert_token_fields(analysis, tokenizer, text)
    with torch.no_grad():
        out = model(**tokenizer(text, return_tensors="pt"), decoder_input_ids=torch.tensor([positions]),
                    output_attentions=True)
    assert out.logits[0].argmax(-1).tolist() == made
    assert_patterns(analysis.patterns["encoder"], out.encoder_attentions)
    assert_patterns(analysis.patterns["decoder"], out.decoder_attentions)
    assert_patterns(analysis.patterns["cross"], out.cross_attentions)


@pytest.mark.parametrize("family", ENCODER_DECODERS)
def test_encoder_decoder_output_is_transformers_greedy_generate(served, built, family):
    tokenizer, model = built[family]
    stops = []
    for text in SENTENCES:
        analysis = served[family].analyze(text, new_tokens=12)
        check_output(analysis, tokenizer, model, text, 12)
        stops.append(analysis.stopped)
    assert "length" in stops
    assert len(served[family].analyze(TEXT).output_tokens) <= served[family].info.default_new_tokens


def test_an_output_that_reaches_the_end_token(tmp_path):
    """A BART whose end token gets a bias (final_logits_bias, saved with the weights) just large enough to
    win first at row k >= 1 of one sentence's greedy output: it stops there, with "end"."""
    tokenizer, model = build("bart")
    eos = tokenizer.eos_token_id
    best = None
    for text in SENTENCES:  # the sentence whose smallest margin (best logit - end token's) comes latest
        positions = greedy(tokenizer, model, text, 12)[:-1]
        with torch.no_grad():
            out = model(**tokenizer(text, return_tensors="pt"), decoder_input_ids=torch.tensor([positions]))
        logits = out.logits[0]  # (positions, vocabulary)
        margins = (logits.max(-1).values - logits[:, eos]).tolist()
        k = margins.index(min(margins))
        if k > 0 and (best is None or k > best[1]):
            best = (text, k, (min(margins[:k]) + margins[k]) / 2)  # above row k's margin, below every earlier one
    assert best is not None
    text, k, bias = best
    with torch.no_grad():
        model.final_logits_bias[0, eos] += bias
    analysis = HFModel.load("ends", save(tmp_path / "bart", tokenizer, model)).analyze(text, new_tokens=12)
    check_output(analysis, tokenizer, model, text, 12)
    assert analysis.stopped == "end" and len(analysis.output_tokens) == k + 1  # row k produced the end token


@pytest.mark.parametrize("family", DECODERS)
def test_continuation_is_transformers_greedy_generate_then_attention_over_all(served, built, family):
    tokenizer, model = built[family]
    analysis = served[family].analyze(TEXT, new_tokens=5)
    sequence = greedy(tokenizer, model, TEXT, 5)
    prompt, new = len(tokenizer(TEXT)["input_ids"]), sequence[len(tokenizer(TEXT)["input_ids"]):]
    assert analysis.tokens == tokenizer.convert_ids_to_tokens(sequence)
    assert analysis.generated == [False] * prompt + [True] * len(new)
    assert analysis.stopped == ("end" if new[-1] == tokenizer.eos_token_id else "length")
    assert analysis.stopped == "end" or len(new) == 5
    assert analysis.offsets[prompt:] == [None] * len(new) and analysis.words[prompt:] == [None] * len(new)
    assert analysis.special[prompt:] == [i in tokenizer.all_special_ids for i in new]
    assert_token_fields(analysis, tokenizer, TEXT)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([sequence]), output_attentions=True)
    assert_patterns(analysis.patterns["decoder"], out.attentions)
    assert served[family].analyze(TEXT, new_tokens=0).generated is None


def test_generated_ids_beyond_the_tokenizer_still_have_a_name(served, built):
    """Models often have more output rows than their tokenizer has tokens (padded to a round number)."""
    tokenizer = built["gpt2"][0]
    assert served["gpt2"].id_tokens([0, len(tokenizer) + 5]) == [tokenizer.convert_ids_to_tokens(0),
                                                                 f"<id {len(tokenizer) + 5}>"]


def test_texts_longer_than_the_model_are_refused_or_cut(served, built):
    gpt2, bert, roberta = served["gpt2"], served["bert"], served["roberta"]
    count = gpt2.count_tokens(LONG)
    with pytest.raises(TooManyTokens) as e:
        gpt2.analyze(LONG)
    assert (e.value.count, e.value.limit) == (count, POSITIONS)
    cut = gpt2.analyze(LONG, truncate=True)
    assert cut.truncated and cut.tokens == built["gpt2"][0](LONG)[0].tokens[:POSITIONS]
    cut = bert.analyze(LONG, truncate=True)  # the tokenizer cuts: [CLS] ... [SEP] still close it
    assert len(cut.tokens) == POSITIONS and (cut.tokens[0], cut.tokens[-1]) == ("[CLS]", "[SEP]")
    assert len(roberta.analyze(LONG, truncate=True).tokens) == POSITIONS  # positions start after the padding id

    prompt = PROMPT
    n = gpt2.count_tokens(prompt)
    assert n < POSITIONS < n + 30
    with pytest.raises(ContinuationTooLong) as e:  # a TooManyTokens: the API answers 422
        gpt2.analyze(prompt, new_tokens=30)
    assert (e.value.count, e.value.limit) == (n + 30, POSITIONS) and "generate asks for 30" in str(e.value)
    cut = gpt2.analyze(prompt, truncate=True, new_tokens=30)
    assert cut.truncated and cut.generated[: POSITIONS - 30] == [False] * (POSITIONS - 30)
    assert len(cut.tokens) <= POSITIONS and all(cut.generated[POSITIONS - 30:])
    with pytest.raises(ContinuationTooLong):  # no room for the text at all
        gpt2.analyze(prompt, truncate=True, new_tokens=POSITIONS)


def test_analyze_batch_is_analyze_of_each_text(served):
    model = served["bart"]
    texts = [TEXT, SENTENCES[1]]
    batch = model.analyze_batch(texts, new_tokens=4)
    assert len(batch) == 2 and model.analyze_batch([]) == []
    for text, analysis in zip(texts, batch, strict=True):
        alone = model.analyze(text, new_tokens=4)
        assert analysis.output_tokens == alone.output_tokens
        for kind in alone.patterns:
            assert torch.equal(analysis.patterns[kind], alone.patterns[kind])


# --- the rules, read from configs --------------------------------------------------------------------------

@pytest.mark.parametrize("config, expected", [
    (tf.BertConfig(), "encoder"), (tf.BertConfig(is_decoder=True), "decoder"), (tf.RobertaConfig(), "encoder"),
    (tf.DistilBertConfig(), "encoder"), (tf.GPT2Config(), "decoder"), (tf.LlamaConfig(), "decoder"),
    (tf.BartConfig(), "encoder-decoder"), (tf.T5Config(), "encoder-decoder"),
])
def test_architecture_rule(config, expected):
    assert architecture(config) == expected


def test_position_limits():
    assert position_limit(tf.GPT2Config(n_positions=4096)) == 1024  # capped
    assert position_limit(tf.BertConfig(max_position_embeddings=512)) == 512
    assert position_limit(tf.RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512
    assert position_limit(tf.T5Config()) == 512  # relative positions: our documented cap


# --- checkpoints Headscope refuses, with one line saying why ------------------------------------------------

def copy_checkpoint(source: Path, target: Path, keep) -> Path:
    target.mkdir()
    for f in source.iterdir():
        if keep(f.name):
            shutil.copy(f, target / f.name)
    return target


def test_directories_that_are_not_checkpoints(checkpoints, tmp_path):
    gpt2 = checkpoints["gpt2"]
    cases = {
        tmp_path / "missing": "does not exist",
        gpt2 / "config.json": "is not a directory",
        copy_checkpoint(gpt2, tmp_path / "no-config", lambda n: n != "config.json"): "has no config.json",
        copy_checkpoint(gpt2, tmp_path / "no-weights", lambda n: not n.endswith(".safetensors")): "has no weights",
        copy_checkpoint(gpt2, tmp_path / "no-tokenizer", lambda n: not n.startswith("tokenizer")): "has no tokenizer",
    }
    for path, words in cases.items():
        with pytest.raises(CheckpointError, match=words) as e:
            HFModel.load("x", path)
        assert len(str(e.value).splitlines()) == 1 and str(path) in str(e.value)
    pointer = copy_checkpoint(gpt2, tmp_path / "lfs", lambda n: True)
    (pointer / "model.safetensors").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n")
    with pytest.raises(CheckpointError, match="Git LFS pointer"):
        HFModel.load("x", pointer)


def test_a_slow_only_tokenizer_is_refused(checkpoints, tmp_path):
    """A T5 model with ByT5's tokenizer (as google/byt5-small), which exists only in Python."""
    path = copy_checkpoint(checkpoints["t5"], tmp_path / "byt5", lambda n: not n.startswith("tokenizer"))
    tf.ByT5Tokenizer().save_pretrained(path)
    with pytest.raises(CheckpointError, match="slow, Python-only"):
        HFModel.load("x", path)


@pytest.mark.parametrize("architecture_class, config", [
    (tf.FNetModel, tf.FNetConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2, intermediate_size=64)),
    (tf.MambaForCausalLM, tf.MambaConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2, state_size=4)),
])
def test_models_without_attention_are_refused(checkpoints, tmp_path, architecture_class, config):
    """FNet (Fourier mixing) and Mamba (a state-space model) have no attention: transformers loads them
    with attn_implementation="eager" without complaint, and output_attentions=True gives no weights
    (None, or no field at all), which the probe at load time finds."""
    path = copy_checkpoint(checkpoints["gpt2"], tmp_path / "no-attention", lambda n: n.startswith("tokenizer"))
    architecture_class(config).save_pretrained(path)
    with pytest.raises(CheckpointError, match="returns no attention weights") as e:
        HFModel.load("x", path)
    assert architecture_class.__name__ in str(e.value)


def test_weights_that_do_not_fit_the_config_are_refused(checkpoints, tmp_path):
    path = copy_checkpoint(checkpoints["gpt2"], tmp_path / "deeper", lambda n: True)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "n_layer": 3}))
    with pytest.raises(CheckpointError, match=r"weights missing .*h\.2\."):
        HFModel.load("x", path)


def test_a_pytorch_bin_checkpoint_loads_with_weights_only(checkpoints, built, tmp_path):
    tokenizer, model = built["gpt2"]
    path = copy_checkpoint(checkpoints["gpt2"], tmp_path / "bin", lambda n: not n.endswith(".safetensors"))
    torch.save(model.state_dict(), path / "pytorch_model.bin")  # as checkpoints from before safetensors
    assert weight_files(path) == [path / "pytorch_model.bin"]
    analysis = HFModel.load("bin", path).analyze(TEXT)
    with torch.no_grad():
        out = model(**tokenizer(TEXT, return_tensors="pt"), output_attentions=True)
    assert_patterns(analysis.patterns["decoder"], out.attentions)

    ran = tmp_path / "ran"

    class Code:  # unpickling this would create the file `ran`
        def __reduce__(self):
            return open, (str(ran), "w")

    torch.save({**model.state_dict(), "code": Code()}, path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="more than tensors"):
        HFModel.load("bin", path)
    assert not ran.exists()


def test_memory_estimate_counts_the_weights_as_float32(checkpoints, tmp_path):
    from safetensors import safe_open

    files = weight_files(checkpoints["llama"])
    with safe_open(str(files[0]), framework="pt") as f:
        elements = sum(f.get_tensor(k).numel() for k in f.keys())
    assert float32_bytes(files) == 4 * elements
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < available_memory() <= total
    check_memory(tmp_path, 2**30, 2 * 2**30)
    with pytest.raises(CheckpointError, match=r"need about 2\.0 GiB as float32 but only 1\.0 GiB"):
        check_memory(tmp_path, 2 * 2**30, 2**30)


# --- through the API and the command line --------------------------------------------------------------------

@pytest.fixture(scope="module")
def hf_client(checkpoints):
    specs = tuple(ModelSpec(f"tiny-{f}", str(checkpoints[f])) for f in ("gpt2", "bart", "llama"))
    with TestClient(create_app(Settings(models=specs))) as client:  # loaded by the app, on its model thread
        yield client


def test_api_serves_checkpoints_with_the_first_as_default(hf_client, served):
    listed = hf_client.get("/api/models").json()
    assert listed["default"] == "tiny-gpt2"
    models = {m["name"]: m for m in listed["models"]}
    assert models["tiny-llama"]["kv_heads"] == 2 and models["tiny-gpt2"]["generation"] == "continuation"
    assert models["tiny-bart"]["kinds"]["cross"] == {"rows": "output_tokens", "columns": "tokens", "causal": False}

    body = hf_client.post("/api/attention", json={"text": TEXT}).json()
    expected = served["gpt2"].analyze(TEXT)
    assert body["model"] == "tiny-gpt2" and body["tokens"] == expected.tokens and body["generated"] is None
    torch.testing.assert_close(torch.tensor(body["attention"]["decoder"]), expected.patterns["decoder"],
                               atol=1e-6, rtol=0)

    body = hf_client.post("/api/attention", json={"text": TEXT, "generate": 3}).json()
    continued = served["gpt2"].analyze(TEXT, new_tokens=3)
    assert body["tokens"] == continued.tokens and body["generated"] == continued.generated
    assert body["generated"][: len(expected.tokens)] == [False] * len(expected.tokens) and any(body["generated"])


def test_api_generation_fields_per_model(hf_client, served):
    body = hf_client.post("/api/attention", json={"text": TEXT, "model": "tiny-bart", "max_new_tokens": 4}).json()
    expected = served["bart"].analyze(TEXT, new_tokens=4)
    assert body["output_tokens"] == expected.output_tokens and len(body["output_tokens"]) <= 4
    assert body["output_text"] == expected.output_text and body["stopped"] == expected.stopped
    refused = [
        {"text": TEXT, "max_new_tokens": 4},  # the default, GPT-2, continues text; it writes no output
        {"text": TEXT, "model": "tiny-bart", "generate": 3},
    ]
    for request in refused:
        r = hf_client.post("/api/attention", json=request)
        assert r.status_code == 422 and r.json()["error"] == "not_generating"
    r = hf_client.post("/api/attention", json={"text": PROMPT, "generate": 30})
    assert r.status_code == 422 and r.json()["error"] == "too_many_tokens" and r.json()["limit"] == POSITIONS


def test_cli_reports_a_checkpoint_it_cannot_serve_in_one_line(tmp_path):
    missing = tmp_path / "nonexistent"
    done = subprocess.run([sys.executable, "-m", "headscope", "serve", "--model", f"x={missing}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [f"headscope: error: {missing} does not exist; "
                                                "give NAME=PATH with a Hugging Face checkpoint directory"]


@pytest.mark.parametrize("command", ["serve", "heads"])
def test_cli_commands_exit_2_on_a_checkpoint_without_weights(checkpoints, tmp_path, capsys, command):
    from headscope.cli.main import main

    no_weights = copy_checkpoint(checkpoints["gpt2"], tmp_path / "no-weights", lambda n: n.endswith(".json"))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    args = ["serve"] if command == "serve" else ["heads", str(corpus), "--out", str(tmp_path / "heads.csv")]
    with pytest.raises(SystemExit) as e:
        main([*args, "--model", f"x={no_weights}"])
    assert e.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == f"headscope: error: {no_weights} has no weights (model.safetensors or pytorch_model.bin); " \
                   "save them with model.save_pretrained(PATH)"
    assert not (tmp_path / "heads.csv").exists()


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_a_special_token_typed_in_the_text_is_special_as_when_added(served, built, family):
    tokenizer, _ = built[family]
    typed = tokenizer.eos_token or tokenizer.sep_token
    analysis = served[family].analyze(f"The cat {typed} sat.")
    ids = tokenizer(f"The cat {typed} sat.")["input_ids"]
    expected = [i in tokenizer.all_special_ids for i in ids]
    assert analysis.tokens.count(typed) >= 1 and analysis.special == expected
    assert analysis.special[analysis.tokens.index(typed, 1 if family == "bert" else 0)]
