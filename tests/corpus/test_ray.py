"""The Ray engine of `headscope heads`: on a local two-CPU Ray instance it gives what the local engine
gives (sums, skipped lines by their number in the file), through the function and through the CLI;
without Ray the CLI says how to install it."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.corpus import sentences
from headscope.analyses.heads import lines_sums
from headscope.cli.heads import write_heads
from headscope.cli.main import main
from headscope.corpus.ray import INSTALL_HINT, init_ray, pool_shape, ray_lines_sums
from headscope.models.registry import ModelSpec

ROOT = Path(__file__).parents[2]
TOLERANCE = 1e-6  # |ray - local| <= TOLERANCE * (1 + |local|): batches of other lengths round a little differently


@pytest.fixture(scope="session")
def ray_address():
    """A local Ray instance with 2 CPUs for the whole session; its address, for other processes to join."""
    import ray

    init_ray(num_cpus=2)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> tuple[Path, list[str]]:
    """300 varied lines with blank, whitespace-only and too-long ones among them, CRLF line ends."""
    lines = sentences(300)
    lines[0] = lines[298] = ""
    lines[7] = "   "
    lines[41] = "word " * 600
    lines[250] = "token " * 520
    path = tmp_path_factory.mktemp("ray") / "corpus.txt"
    path.write_bytes("".join(line + "\r\n" for line in lines).encode())
    return path, lines


@pytest.fixture(scope="session")
def local_result(corpus, minilm):
    """The local engine's (Sums, skipped) on the corpus."""
    _, lines = corpus
    return lines_sums(minilm, lines, list(range(1, len(lines) + 1)), truncate=False, batch_size=32)


def assert_same_heads(ray_heads: dict, local_heads: dict) -> None:
    assert ray_heads.keys() == local_heads.keys()
    for kind in local_heads:
        for got, expected in zip(ray_heads[kind], local_heads[kind], strict=True):
            assert (got["name"], got["roles"]) == (expected["name"], expected["roles"])
            if "n" in expected:  # Sums' summary (the CLI's JSON has them too): counts and role shares are exact
                assert (got["n"], got["role_share"]) == (expected["n"], expected["role_share"])
            for metric, value in expected["metrics"].items():
                if value is None:
                    assert got["metrics"][metric] is None, (got["name"], metric)
                else:
                    assert math.isclose(got["metrics"][metric], value, rel_tol=0, abs_tol=TOLERANCE * (1 + abs(value))), \
                        (got["name"], metric, got["metrics"][metric], value)


def test_ray_engine_equals_the_local_engine(ray_address, corpus, local_result):
    path, _ = corpus
    local, local_skipped = local_result
    progress = []
    sums, skipped = ray_lines_sums(path, ModelSpec("minilm"), truncate=False, batch_size=32, actors=2,
                                   block_lines=64, progress=lambda done, total: progress.append((done, total)))
    assert skipped == local_skipped and [s["line"] for s in skipped] == [42, 251]  # blank lines: no report
    assert sums.sentences == local.sentences == 295 and sums.keys == local.keys
    for metric, count in local.counts["encoder"].items():
        assert sums.counts["encoder"][metric].tolist() == count.tolist()
    assert_same_heads(sums.summary(), local.summary())
    done = [d for d, _ in progress]
    assert progress[0] == (0, 300) and progress[-1] == (300, 300) and all(t == 300 for _, t in progress)
    assert len(done) > 5 and done == sorted(done) and all(b - a <= 64 for a, b in zip(done, done[1:]))  # blocks of <= 64


def test_ray_engine_on_a_file_that_is_not_utf8_raises_what_the_local_engine_raises(ray_address, tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Fine.\nCafé au lait.\n".encode("latin-1"))
    with pytest.raises(UnicodeDecodeError):
        path.read_text(encoding="utf-8")
    with pytest.raises(UnicodeDecodeError) as raised:
        ray_lines_sums(path, ModelSpec("minilm"), truncate=False, batch_size=32)
    assert raised.value.start == len("Fine.\nCaf")


def test_cli_ray_engine_on_a_missing_file_says_so_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["heads", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "h.csv"), "--engine", "ray"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"headscope: error: cannot read {tmp_path / 'missing.txt'}: No such file or directory\n"


def test_pool_leaves_a_cpu_for_ray_datas_own_tasks():
    assert pool_shape(2, None) == (1, 1.0)
    assert pool_shape(2, 2) == (2, 0.5)
    assert pool_shape(1, None) == (1, 0.5)
    assert pool_shape(64, None) == (63, 1.0)


def headscope(*args, **options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "headscope", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, **options)


def test_cli_ray_engine_writes_what_the_local_engine_writes(ray_address, corpus, local_result, tmp_path):
    path, _ = corpus
    write_heads(tmp_path / "local.json", "minilm", *local_result)  # what `heads` writes with the local engine
    on_ray = headscope("heads", path, "--out", tmp_path / "ray.json", "--engine", "ray", "--address", ray_address)
    assert on_ray.returncode == 0, on_ray.stderr
    assert "skipped line 42: text has 602 tokens" in on_ray.stderr and "skipped line 251" in on_ray.stderr
    assert "300/300" in on_ray.stderr and "295 sentences averaged" in on_ray.stderr
    expected, got = (json.loads((tmp_path / name).read_text()) for name in ("local.json", "ray.json"))
    summed = ("heads", "similarity")  # float sums in another order: equal within TOLERANCE
    assert {k: v for k, v in got.items() if k not in summed} == {k: v for k, v in expected.items() if k not in summed}
    for kind, similarity in expected["similarity"].items():
        assert got["similarity"][kind]["heads"] == similarity["heads"]
        assert sorted(got["similarity"][kind]["order"]) == sorted(similarity["order"])
        assert all(math.isclose(a, b, rel_tol=0, abs_tol=TOLERANCE) for row_a, row_b in
                   zip(got["similarity"][kind]["distance"], similarity["distance"], strict=True)
                   for a, b in zip(row_a, row_b, strict=True))
    assert got["skipped"][0] == {"line": 42, "error": "text has 602 tokens but minilm takes at most 512"}
    assert_same_heads(got["heads"], expected["heads"])


def test_cli_ray_engine_without_ray_says_how_to_install(corpus, tmp_path):
    path, _ = corpus
    code = ("import sys; sys.modules['ray'] = None  # as if Ray were not installed\n"
            "from headscope.cli.main import main; main(sys.argv[1:])")
    done = subprocess.run([sys.executable, "-c", code, "heads", str(path), "--out", str(tmp_path / "h.csv"),
                           "--engine", "ray"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr == f"headscope: error: {INSTALL_HINT}\n"
    assert "pip install -e '.[ray]'" in INSTALL_HINT and not (tmp_path / "h.csv").exists()
