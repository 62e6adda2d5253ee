"""One head or many: the experiment's script on a tiny budget, and the committed results it produced."""

import json

import pytest

from headscope.training.one_head_or_many import DEFAULT_OUT, HEADS, run


def test_a_run_records_every_measure_and_is_reproducible(tmp_path):
    a = run(heads=2, steps=3, seed=0, device="cpu", weights=tmp_path, final_size=20, role_texts=3)
    b = run(heads=2, steps=3, seed=0, device="cpu", weights=None, final_size=20, role_texts=3)
    assert a["loss"] == b["loss"] and a["heldout_exact"] == b["heldout_exact"]  # same seed, same numbers
    assert a["head_width"] == 64 and 0 <= a["heldout_exact"] <= 1 and a["gap"] == pytest.approx(a["train_exact"] - a["heldout_exact"])
    assert set(a["head_roles"]) == {"encoder", "decoder", "cross"}
    assert a["head_roles"]["cross"]["heads"] == 3 * 2  # layers x heads
    assert (tmp_path / "dates-2h.safetensors").exists()


def test_the_committed_results_compare_like_with_like():
    record = json.loads(DEFAULT_OUT.read_text())
    runs = record["runs"]
    assert [r["heads"] for r in runs] == list(HEADS)
    assert len({r["parameters"] for r in runs}) == 1  # same width: the same parameter count whatever the heads
    assert all(r["head_width"] * r["heads"] == record["recipe"]["width"] for r in runs)
    assert all(len(r["loss"]) > 10 and 0 <= r["heldout_exact"] <= 1 for r in runs)
    one, best = sorted(record["examples"], key=int)
    assert one == "1" and int(best) > 1
    example = record["examples"][best]
    L, H = len(example["patterns"]["encoder"]), len(example["patterns"]["encoder"][0])
    assert (L, H) == (3, int(best)) and len(example["patterns"]["cross"][0][0]) == len(example["output_tokens"])


def test_the_api_serves_them(client):
    r = client.get("/api/one-head-or-many")
    assert r.status_code == 200 and r.json()["runs"][0]["heads"] == 1


def test_the_script_says_its_progress_on_stderr_as_it_goes(tmp_path, capsys):
    from headscope.training.one_head_or_many import PROGRESS_EVERY, main

    steps = PROGRESS_EVERY + 2
    main(["--out", str(tmp_path / "out.json"), "--steps", str(steps), "--heads", "1", "2"])
    err = capsys.readouterr().err.splitlines()
    for heads in (1, 2):
        lines = [line for line in err if line.startswith(f"{heads} head")]
        assert [line.split("step ")[1].split(",")[0] for line in lines] == [f"{PROGRESS_EVERY}/{steps}", f"{steps}/{steps}"]
    assert json.loads((tmp_path / "out.json").read_text())["recipe"]["steps"] == steps
