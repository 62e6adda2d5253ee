"""GGUF files of every architecture transformers reads from GGUF, served as `--model NAME=FILE.gguf`.

Each family's file is a tiny random model written by tests/checkpoints.py (write_gguf: GGUFWriter, float32 tensors
named as gguf's own tensor map names them, the tokenizer in the file). The reference is transformers itself reading
the same file (`from_pretrained(folder, gguf_file=...)`, eager attention, output_attentions); the ablation reference
is transformers' model with a forward pre-hook on its attention output projection that zeroes the head's columns.
"""

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from headscope.models.hf import gguf
from headscope.models.hf.model import CheckpointError
from headscope.models.interventions import Ablation, ablating
from headscope.models.registry import ModelSpec, load_model, parse_specs
from headscope.server.app import create_app
from headscope.server.settings import Settings
from tests.checkpoints import GGUF_FAMILIES, build_causal, write_gguf

ROOT = Path(__file__).parents[2]
TEXT = "The cat sat on the mat because it was warm."
KV_HEADS = {"gpt2": None, "llama": 2, "qwen2": 2, "mistral": 2, "phi3": 2}  # of 4 query heads; None: each its own
CLASS = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
         "mistral": "LlamaForCausalLM",  # llama.cpp writes Mistral as the llama architecture; transformers reads it so
         "phi3": "Phi3ForCausalLM"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """HEADSCOPE_CACHE for this module: load_model and the server find the cache through it."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(gguf.CACHE_ENV, str(folder))
        yield folder


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gguf")
    return {family: write_gguf(folder / f"tiny-{family}.gguf", family) for family in GGUF_FAMILIES}


@pytest.fixture(scope="module")
def served(files, cache):
    """family -> the model as `--model NAME=FILE.gguf` loads it (this load writes the cache)."""
    return {family: load_model(ModelSpec(f"tiny-{family}", str(path))) for family, path in files.items()}


def reference(path: Path):
    """transformers reading the GGUF file itself: (tokenizer, model)."""
    import transformers as tf

    where = dict(gguf_file=path.name, local_files_only=True)
    tokenizer = tf.AutoTokenizer.from_pretrained(path.parent, **where)
    net = tf.AutoModelForCausalLM.from_pretrained(path.parent, **where, dtype=torch.float32,
                                                  attn_implementation="eager")
    return tokenizer, net.eval()


def reference_attention(path: Path, text: str):
    """(tokens, (L, H, T, T) weights) from transformers reading the file."""
    tokenizer, net = reference(path)
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        attentions = net(input_ids=ids, output_attentions=True).attentions
    return tokenizer.convert_ids_to_tokens(ids[0]), torch.stack([a[0] for a in attentions])


def output_projection(net, layer: int):
    """transformers' linear layer that reads layer's heads concatenated (o_proj; GPT-2's Conv1D c_proj)."""
    if hasattr(net, "transformer"):
        return net.transformer.h[layer].attn.c_proj
    return net.model.layers[layer].self_attn.o_proj


def test_the_files_are_deterministic_and_hold_the_model_they_were_built_from(files, tmp_path):
    for family, path in files.items():
        again = write_gguf(tmp_path / path.name, family)
        assert hashlib.sha256(again.read_bytes()).digest() == hashlib.sha256(path.read_bytes()).digest(), family
        _, original = build_causal(family)
        _, net = reference(path)
        assert type(net).__name__ == CLASS[family]
        read = net.state_dict()
        for name, tensor in original.state_dict().items():  # the reader gives back every weight exactly
            if name in read:
                assert torch.equal(read[name], tensor), (family, name)
        assert {n for n in original.state_dict() if "attn.bias" not in n and "masked_bias" not in n} <= set(read)


@pytest.mark.parametrize("family", GGUF_FAMILIES)
def test_attention_equals_transformers_reading_the_same_file(family, files, served):
    model = served[family]
    analysis = model.analyze(TEXT)
    tokens, expected = reference_attention(files[family], TEXT)
    assert analysis.tokens == tokens
    actual = torch.as_tensor(analysis.patterns["decoder"])
    assert actual.shape == expected.shape == (2, 4, len(tokens), len(tokens))
    assert torch.allclose(actual, expected, atol=1e-5), (actual - expected).abs().max()
    assert model.info.heads == 4 and model.info.kv_heads == KV_HEADS[family]  # grouped-query attention said
    assert files[family].name in model.info.description


@pytest.mark.parametrize("family", GGUF_FAMILIES)
def test_one_heads_ablation_equals_zeroing_its_columns_of_transformers_output_projection(family, files, served):
    model, (layer, head), D = served[family], (1, 2), 8  # width 32 / 4 heads
    tokenizer, net = reference(files[family])
    ids = tokenizer(TEXT, return_tensors="pt")["input_ids"]

    def zero_head(module, args):
        (z,) = args  # (B, T, H * D): the heads concatenated, before the projection
        z = z.clone()
        z[..., head * D:(head + 1) * D] = 0
        return (z,)

    hook = output_projection(net, layer).register_forward_pre_hook(zero_head)
    with torch.no_grad():
        expected = net(input_ids=ids).logits
        hook.remove()
        unablated = net(input_ids=ids).logits
        with ablating(model.attention_modules(), Ablation((("decoder", layer, head),), "zero")):
            ours = model.net(input_ids=ids).logits
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
    assert (ours - unablated).abs().max() > 1e-4  # the head mattered: the comparison can fail


@pytest.mark.parametrize("family", GGUF_FAMILIES)
def test_the_second_load_reads_the_cache_without_dequantizing(family, files, served, cache, monkeypatch):
    entry = cache / "gguf" / gguf.content_hash(files[family])
    assert gguf.trusted(entry, entry.name)

    def no(*args):
        raise AssertionError("dequantized again")

    monkeypatch.setattr(gguf, "dequantize", no)
    again = load_model(ModelSpec("again", str(files[family])))
    assert torch.equal(torch.as_tensor(again.analyze(TEXT).patterns["decoder"]),
                       torch.as_tensor(served[family].analyze(TEXT).patterns["decoder"]))


@pytest.mark.parametrize("family", GGUF_FAMILIES)
def test_the_cache_holds_the_weights_save_pretrained_writes(family, files, served, cache, tmp_path):
    """The cached weights file holds the tensors, under the names, that transformers' own save_pretrained writes
    for the same model (tied weights once, under the source's name, so a start from the cache initializes none),
    each equal to the bit to what transformers reads from the GGUF file."""
    from safetensors import safe_open

    _, net = reference(files[family])
    net.config.architectures = [type(net).__name__]
    plain = type(net)(net.config)  # a model of the same class that save_pretrained accepts (not read from GGUF)
    plain.load_state_dict(net.state_dict())
    plain.save_pretrained(tmp_path)
    entry = cache / "gguf" / gguf.content_hash(files[family])
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as expected, \
            safe_open(str(entry / "model.safetensors"), framework="pt") as cached:
        assert sorted(cached.keys()) == sorted(expected.keys())
        state = net.state_dict()
        assert all(torch.equal(cached.get_tensor(k), state[k]) for k in cached.keys())


def test_serve_with_model_name_equals_file_answers_attention_equal_to_transformers(files, served, cache):
    settings = Settings(models=parse_specs([f"tiny-{family}={path}" for family, path in files.items()]))
    with TestClient(create_app(settings)) as client:
        listed = {m["name"]: m for m in client.get("/api/models").json()["models"]}
        for family, path in files.items():
            name = f"tiny-{family}"
            assert listed[name]["kv_heads"] == KV_HEADS[family]
            body = client.post("/api/attention", json={"text": TEXT, "model": name})
            assert body.status_code == 200, body.text
            tokens, expected = reference_attention(path, TEXT)
            assert body.json()["tokens"] == tokens
            actual = torch.tensor(body.json()["attention"]["decoder"])
            assert torch.allclose(actual, expected, atol=1e-5), (family, (actual - expected).abs().max())


def unread_architecture() -> str:
    """An architecture llama.cpp writes (the gguf package names it) that transformers does not read from GGUF:
    BERT (llama.cpp's embedding models) while transformers leaves it out, else the first such, so that the test
    stays true on newer releases."""
    import gguf as gguf_package
    from transformers.integrations.gguf.utils import is_gguf_arch_supported
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    names = [n for n in gguf_package.MODEL_ARCH_NAMES.values()
             if n not in GGUF_SUPPORTED_ARCHITECTURES and not is_gguf_arch_supported(n)]
    return "bert" if "bert" in names else names[0]


def test_a_file_transformers_cannot_read_is_one_line_naming_the_file_and_the_reason(tmp_path):
    import gguf as gguf_package

    arch = unread_architecture()
    path = tmp_path / "model.gguf"
    writer = gguf_package.GGUFWriter(str(path), arch)  # a well-formed file: metadata, a tokenizer, a tensor
    writer.add_block_count(2)
    writer.add_embedding_length(32)
    writer.add_head_count(4)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(["a", "b", "a b"])
    writer.add_token_merges(["a b"])
    writer.add_tensor("token_embd.weight", torch.zeros(3, 32).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(CheckpointError) as caught:
        gguf.cached_checkpoint(path, tmp_path / "cache")
    message = str(caught.value)
    assert "\n" not in message and str(path.resolve()) in message
    assert "transformers cannot read it as a GGUF model" in message and arch in message, message
    assert list((tmp_path / "cache" / "gguf").iterdir()) == []  # nothing left that a later start would trust
    done = subprocess.run([sys.executable, "-m", "headscope", "attention", TEXT, "--model", f"mine={path}",
                           "--out", str(tmp_path / "a.json"), "--cache-dir", str(tmp_path / "cache")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert lines[-1].startswith("headscope: error: ") and str(path) in lines[-1], lines
    assert "transformers cannot read it as a GGUF model" in lines[-1] and arch in lines[-1], lines


@pytest.mark.parametrize("family", GGUF_FAMILIES)
def test_each_heads_output_projection_is_found_as_transformers_own(family, served):
    model = served[family]  # value norms and the mechanism view read W_O through these
    for layer in range(model.info.layers):
        assert model.output_projections()[("decoder", layer)] is output_projection(model.net, layer)
    assert len(model.hook_points()) > 0
