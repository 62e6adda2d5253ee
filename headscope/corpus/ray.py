"""Corpus statistics on Ray: the per-head sums of `headscope.analyses.heads.lines_sums`, computed by a pool of actors.

    read the file's lines with their numbers (NumberedLines: read_text's reader, plus the number)
      -> map_batches(LinesWorker): an actor pool, one model copy per actor, lines_sums per block of lines
      -> the driver adds the blocks' Sums up as they arrive (Sums merge in any order)

Why not `ray.data.read_text`: its rows do not say which line they were, and skipped lines must be
reported by their line in the file, as the local engine does. Numbering them afterwards needs
`Dataset.zip` with `range`, which Ray 2.60 deprecates (it trusts an order Ray Data does not
promise). NumberedLines reads as read_text does (the whole file decoded, then `str.splitlines`,
the split the local engine uses too, blank lines kept) and puts each line's number beside it.

Without an address a local Ray instance is started and stopped again; with one, the job joins
that cluster (`ray start --head` on one machine, `ray start --address=HEAD:6379` on the others).
Our `model` package travels to the workers with the job (runtime_env py_modules), so they run
the driver's code; each machine needs the dependencies (`pip install -e '.[ray]'`) and the
corpus at the same path (a shared filesystem): Ray's read task may run on any of them.

Ray is an optional extra: it is imported inside the functions here, never at module level.
"""

import logging
import pickle
from collections.abc import Callable
from pathlib import Path

from headscope.analyses.heads import Sums, lines_sums
from headscope.models.registry import ModelSpec, load_model

INSTALL_HINT = "the Ray engine needs Ray: pip install -e '.[ray]'"
BLOCK_LINES = 512  # lines per actor call: sorted by length within it, then run `batch_size` at a time


class RayNotInstalled(RuntimeError):
    pass


def import_ray():
    """The `ray` module with Ray Data, or RayNotInstalled saying how to get it."""
    try:
        import ray
        import ray.data  # noqa: F401  (the [data] extra: pyarrow, pandas)
    except ImportError as e:
        raise RayNotInstalled(INSTALL_HINT) from e
    return ray


def numbered_lines(corpus: str | Path):
    """A Ray dataset of the file's lines: {"line": 1-based number, "text": the line}, blank lines included."""
    ray = import_ray()
    from ray.data.datasource import FileBasedDatasource

    class NumberedLines(FileBasedDatasource):
        def _read_stream(self, f, path):
            import pyarrow as pa

            texts = f.readall().decode("utf-8").splitlines()
            yield pa.table({"line": pa.array(range(1, len(texts) + 1), pa.int64()), "text": pa.array(texts, pa.string())})

    return ray.data.read_datasource(NumberedLines(str(Path(corpus).resolve())))


class LinesWorker:
    """A Ray Data actor: loads the model once, then turns blocks of numbered lines into Sums."""

    def __init__(self, spec: ModelSpec, truncate: bool, batch_size: int):
        import torch

        torch.set_num_threads(1)  # one copy per CPU: many single-thread copies beat one copy on many threads
        self.model = load_model(spec)
        self.truncate = truncate
        self.batch_size = batch_size

    def __call__(self, block: dict) -> dict:
        """{"line": numbers, "text": lines} -> one row: lines done, pickled (Sums, skipped)."""
        import numpy as np

        lines = [str(text) for text in block["text"]]
        numbers = [int(n) for n in block["line"]]
        result = lines_sums(self.model, lines, numbers, self.truncate, self.batch_size)
        packed = np.empty(1, dtype=object)  # a bytes object per row, kept whole (not a fixed-width array)
        packed[0] = pickle.dumps(result)
        return {"lines": np.array([len(lines)]), "result": packed}


def init_ray(address: str | None = None, **options) -> None:
    """Join the Ray cluster at `address`, or start a local instance (options: ray.init's, e.g. num_cpus).

    The job ships our `model` package to every worker, so they all run the code this process runs.
    """
    ray = import_ray()
    import headscope

    if not address:
        options.setdefault("include_dashboard", False)
    ray.init(address=address, runtime_env={"py_modules": [str(Path(headscope.__file__).parent)]},
             logging_level=logging.ERROR, **options)


def pool_shape(cpus: float, actors: int | None) -> tuple[int, float]:
    """(actors, CPUs reserved by each) for a cluster with `cpus` CPUs.

    Ray Data's own tasks (reading, numbering) need a CPU too: a pool that reserves every CPU
    starves them and the job waits forever, so one CPU (half of a one-CPU cluster) stays free.
    """
    room = max(cpus - 1, cpus / 2)
    actors = actors or max(1, int(room))
    return actors, min(1.0, room / actors)


def ray_lines_sums(corpus: str | Path, spec: ModelSpec, *, truncate: bool, batch_size: int,
                   address: str | None = None, actors: int | None = None, block_lines: int = BLOCK_LINES,
                   progress: Callable[[int, int], object] = lambda done, total: None) -> tuple[Sums, list[dict]]:
    """What `lines_sums` gives for the whole file, computed on Ray: (Sums, skipped lines sorted by line).

    Uses the Ray instance this process is connected to, else joins `address`, else starts a local
    one; one it started is shut down at the end. block_lines: lines per actor call.
    progress(done, total) counts lines.
    """
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        init_ray(address)
    try:
        # Ray Data logs each execution, and each failure with its traceback, which is then raised here
        # too: the caller reports it once.
        logging.getLogger("ray.data").setLevel(logging.CRITICAL)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the caller shows one bar
        lines = numbered_lines(corpus)
        total = lines.count()
        count, cpus = pool_shape(ray.cluster_resources().get("CPU", 1.0), actors)
        results = lines.map_batches(LinesWorker, fn_constructor_args=(spec, truncate, batch_size),
                                    batch_size=block_lines, compute=ray.data.ActorPoolStrategy(size=count),
                                    num_cpus=cpus)
        sums, skipped, done = Sums(), [], 0
        progress(done, total)
        for row in results.iter_rows():  # the final reduce, block by block as they finish
            block_sums, block_skipped = pickle.loads(row["result"])
            sums += block_sums
            skipped += block_skipped
            done += int(row["lines"])
            progress(done, total)
        return sums, sorted(skipped, key=lambda s: s["line"])
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, UnicodeDecodeError):  # the file is not UTF-8: the error the local engine gives
            raise e.cause from None
        raise
    finally:
        if started:
            ray.shutdown()
