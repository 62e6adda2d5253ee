"""`headscope attention`: one text's answer written as the API gives it, value norms and rollout included,
and one clear line for what it cannot do."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson

from headscope.analyses.rollout import rollouts
from headscope.analyses.value_norm import value_norms
from headscope.server.encoding import read_safetensors

ROOT = Path(__file__).parents[2]
TEXT = "The keys to the cabinet are on the table."


def run(*args):
    return subprocess.run([sys.executable, "-m", "headscope", "attention", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_value_norms_and_rollout_to_json_and_safetensors(tmp_path, minilm):
    analysis, norms = value_norms(minilm, TEXT)
    expected_rollout = rollouts(analysis.patterns, analysis.layout)["encoder"].numpy()
    out = tmp_path / "a.json"
    r = run(TEXT, "--model", "minilm", "--weights", "value_norm", "--rollout", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}: minilm, {len(analysis.tokens)} tokens, value_norm, rollout" in r.stderr
    a = orjson.loads(out.read_bytes())
    assert a["weights"]["name"] == "value_norm" and a["tokens"] == analysis.tokens
    np.testing.assert_allclose(a["attention"]["encoder"], norms["encoder"].numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(a["rollout"]["encoder"], expected_rollout, atol=1e-6, rtol=0)
    out = tmp_path / "a.safetensors"
    assert run(TEXT, "--model", "minilm", "--out", str(out)).returncode == 0
    b = read_safetensors(out.read_bytes())
    assert b["weights"]["name"] == "attention"
    np.testing.assert_array_equal(b["attention"]["encoder"], analysis.patterns["encoder"].numpy())


def test_what_it_cannot_do_is_one_line(tmp_path):
    r = run("word " * 600, "--model", "minilm", "--out", str(tmp_path / "a.json"))
    assert r.returncode == 2 and r.stderr.startswith("headscope: error: text has") and len(r.stderr.splitlines()) == 1
    r = run("   ", "--model", "minilm", "--out", str(tmp_path / "a.json"))
    assert r.returncode == 2 and "text is empty" in r.stderr
    r = run(TEXT, "--out", str(tmp_path / "a.csv"))
    assert r.returncode == 2 and "must end in .json or .safetensors" in r.stderr


def test_value_norms_of_a_model_without_reachable_projections_is_one_line(tmp_path, monkeypatch, capsys):
    import pytest

    import headscope.server.answers
    from headscope.analyses.value_norm import NoValueNorms
    from headscope.cli.main import main

    def unreachable(model):
        raise NoValueNorms(f"{model.info.name}: its output projections cannot be found")

    monkeypatch.setattr(headscope.server.answers, "check_value_norms", unreachable)
    with pytest.raises(SystemExit) as stop:
        main(["attention", TEXT, "--model", "induction", "--weights", "value_norm", "--out", str(tmp_path / "a.json")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [
        "headscope: error: weights: value_norm is not available for induction: induction: its output projections "
        "cannot be found"]
    assert not (tmp_path / "a.json").exists()


def test_an_image_for_the_digits_model_writes_the_apis_answer_and_prints_the_prediction(tmp_path):
    """`--image FILE --model digits`: the same answer as a direct DigitsModel run on the file's pixels (decoded
    here by Pillow and numpy), and the prediction on stderr; text and image swapped: one clear line each."""
    import io

    import torch
    from PIL import Image

    from headscope.models.digits import DigitsModel, load_images

    images, labels = load_images()
    picture = tmp_path / "digit.png"
    Image.fromarray(np.round(images[0].numpy() * 255).astype(np.uint8), "L").save(picture)
    pixels = np.asarray(Image.open(io.BytesIO(picture.read_bytes())).convert("RGB"), dtype=np.float32) / 255
    want = DigitsModel.load().analyze_image(torch.from_numpy(pixels))
    out = tmp_path / "a.safetensors"
    r = run("--image", str(picture), "--model", "digits", "--rollout", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}: digits, 17 positions, attention, rollout" in r.stderr
    p = want.image["probabilities"][int(want.image["prediction"])]
    assert f"prediction: {want.image['prediction']} (probability {p:.4f}; 4 x 4 patches of 2 x 2 pixels)" in r.stderr
    assert want.image["prediction"] == str(int(labels[0]))
    got = read_safetensors(out.read_bytes())
    np.testing.assert_array_equal(got["attention"]["encoder"], want.patterns["encoder"].numpy())
    assert got["image"]["seen"] == want.image["seen"] and got["tokens"] == want.tokens
    np.testing.assert_allclose(got["rollout"]["encoder"], rollouts(want.patterns, want.layout)["encoder"].numpy(),
                               atol=1e-6)
    r = run(TEXT, "--model", "digits", "--out", str(tmp_path / "b.json"))
    assert r.returncode == 2 and "digits takes an image, not a text: give --image FILE" in r.stderr
    r = run("--image", str(picture), "--model", "minilm", "--out", str(tmp_path / "b.json"))
    assert r.returncode == 2 and "minilm takes a text, not an image" in r.stderr
    bad = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (8, 8)).save(bad)
    r = run("--image", str(bad), "--model", "digits", "--out", str(tmp_path / "b.json"))
    assert r.returncode == 2 and "mode CMYK" in r.stderr and "Traceback" not in r.stderr


def test_a_feature_vit_checkpoint_writes_transformers_attention_and_says_it_predicts_nothing(tmp_path):
    """`--image FILE --model mine=PATH` on a tiny DINOv2 feature folder (tests/checkpoints.py): the answer's attention
    equals transformers' own output_attentions on the folder's processor's pixels (1e-5); no prediction, said."""
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModel

    from tests.checkpoints import save_vision

    folder = save_vision(tmp_path / "dino", "dinov2", classifier=False)
    rng = np.random.default_rng(5)
    picture, out = tmp_path / "photo.png", tmp_path / "a.safetensors"
    Image.fromarray(rng.integers(0, 256, (30, 44, 3), dtype=np.uint8)).save(picture)
    r = run("--image", str(picture), "--model", f"mine={folder}", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "prediction: none, a feature model (no classifier head); 4 x 4 patches of 8 x 8 pixels" in r.stderr
    got = read_safetensors(out.read_bytes())
    pixels = AutoImageProcessor.from_pretrained(folder)(images=Image.open(picture).convert("RGB"),
                                                        return_tensors="pt")["pixel_values"]
    net = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        want = torch.stack(net(pixel_values=pixels, output_attentions=True).attentions, 1)[0].numpy()
    np.testing.assert_allclose(got["attention"]["encoder"], want, atol=1e-5, rtol=0)
    assert got["image"]["predicts"] is False and got["image"]["prediction"] is None
