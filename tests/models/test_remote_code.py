"""A checkpoint's own Python never runs, from any entry point (issue: the CLI on a terminal offered to run it).

The checkpoint is a tiny BERT whose config.json names an unknown model type and points `auto_map` at a
`custom.py` beside it, as checkpoints with custom code do; that file writes a marker beside the checkpoint when imported. Each entry
point is tried as an attacker would hope: the Python API (what the notebook and `serve` call), and the command
line on a real terminal (a pty) answering "y" to any question.
"""

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from headscope.models.hf.model import CheckpointError
from headscope.models.registry import ModelSpec, load_model
from tests.checkpoints import build, save

ROOT = Path(__file__).parents[2]

CUSTOM = '''
import pathlib
pathlib.Path({marker!r}).write_text("the checkpoint's code ran")
from transformers import BertConfig, BertModel
class CustomConfig(BertConfig):
    model_type = "custom-bert"
class CustomModel(BertModel):
    config_class = CustomConfig
'''


@pytest.fixture
def custom(tmp_path) -> Path:
    path = save(tmp_path / "custom", *build("bert"))
    config = json.loads((path / "config.json").read_text())
    config.update(model_type="custom-bert", architectures=["CustomModel"],
                  auto_map={"AutoConfig": "custom.CustomConfig", "AutoModel": "custom.CustomModel"})
    (path / "config.json").write_text(json.dumps(config))
    (path / "custom.py").write_text(CUSTOM.format(marker=str(path / "RAN")))  # transformers imports a copy
    return path


def test_loading_refuses_custom_code_and_never_runs_it(custom):
    with pytest.raises(CheckpointError) as refused:
        load_model(ModelSpec("custom", str(custom)))
    assert str(custom) in str(refused.value) and "custom code" in str(refused.value)
    assert not (custom / "RAN").exists()


def on_a_terminal(args: list[str], answer: bytes, seconds: float = 240) -> tuple[int, str]:
    """Run a command with a pty as its stdin, stdout and stderr, answering every read it waits on with `answer`;
    its exit status and everything it wrote."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(args, stdin=follower, stdout=follower, stderr=follower, cwd=ROOT, close_fds=True)
    os.close(follower)
    written = b""
    deadline = time.monotonic() + seconds
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # the command closed the terminal
                    break
                written += chunk
                if b"?" in chunk or b"[y/N]" in chunk:
                    os.write(leader, answer)
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    return proc.returncode, written.decode(errors="replace")


def test_the_command_line_on_a_terminal_never_offers_to_run_it(custom, tmp_path):
    status, said = on_a_terminal([sys.executable, "-m", "headscope", "attention", "The cat sat.",
                                  "--model", f"custom={custom}", "--out", str(tmp_path / "a.json")], b"y\n")
    assert not (custom / "RAN").exists(), said
    assert status == 2, said
    assert "custom code" in said and "[y/N]" not in said
