"""Corpus statistics: the local engine against the Ray engine with 1 and 2 actors, on one corpus.

    python -m bench.corpus_ray [--sentences 2000] [--cpus 2] [--repeats 2]
Needs the Ray extra (pip install -e '.[ray]'). Starts a local Ray instance with --cpus CPUs once
(its start-up time is printed apart); every run then loads its model copies itself, as
`headscope heads` does. Each engine runs the corpus and its first quarter, all in turns, and the
fastest of --repeats times counts: "marginal" is the rate of the lines between the two (start-up
and model loading cancel out), the rate to expect on a corpus far larger than this one. The last table extrapolates to 10 million sentences from it:
an estimate, not a measurement.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench.common import report
from bench.corpus import OBJECTS, SUBJECTS, VERBS


def varied_sentences(n: int) -> list[str]:
    """Sentences of one to four clauses (about 12 to 50 tokens), no two alike."""
    def clause(i: int) -> str:
        return f"{SUBJECTS[i % 6]} {VERBS[(i // 6) % 6]} {OBJECTS[(i // 36) % 6]}"

    return [" and ".join(clause(i * 7 + k) for k in range(1 + i % 4)) + f" ({i})" for i in range(n)]


def measure(runs: dict, small: Path, full: Path, sentences: int, repeats: int) -> list[dict]:
    """Each `run(path)` on the first quarter and on the whole corpus, in turns, `repeats` times; the
    fastest time of each counts (on a shared machine the others lost time to other work)."""
    times = {(name, path): [] for name in runs for path in (small, full)}
    for _ in range(repeats):
        for name, run in runs.items():
            for path in (small, full):
                started = time.perf_counter()
                run(path)
                times[name, path].append(time.perf_counter() - started)
    rows = []
    for name in runs:
        small_s, full_s = min(times[name, small]), min(times[name, full])
        marginal = (sentences - sentences // 4) / (full_s - small_s)
        rows.append({"engine": name, "s": full_s, "sentences/s": sentences / full_s, "marginal sentences/s": marginal,
                     "start-up s": full_s - sentences / marginal})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import ray
    import torch

    from headscope.analyses.heads import lines_sums
    from headscope.corpus.ray import init_ray, ray_lines_sums
    from headscope.models.registry import ModelSpec, load_model

    lines = varied_sentences(args.sentences)
    folder = Path(tempfile.mkdtemp())
    full, small = folder / "corpus.txt", folder / "quarter.txt"
    full.write_text("\n".join(lines) + "\n")
    small.write_text("\n".join(lines[: args.sentences // 4]) + "\n")
    spec = ModelSpec("minilm")

    def local(path: Path):
        texts = path.read_text().splitlines()
        return lines_sums(load_model(spec), texts, list(range(1, len(texts) + 1)), False, 32)

    def local_threads(threads: int):
        def run(path: Path):
            torch.set_num_threads(threads)
            return local(path)

        return run

    def on_ray(actors: int):
        return lambda path: ray_lines_sums(path, spec, truncate=False, batch_size=32, actors=actors)

    started = time.perf_counter()
    init_ray(num_cpus=args.cpus)
    ray_start = time.perf_counter() - started
    try:
        rows = measure({f"local, {torch.get_num_threads()} threads": local_threads(torch.get_num_threads()),
                        "local, 1 thread": local_threads(1),
                        "ray, 1 actor of 1 thread": on_ray(1),
                        "ray, 2 actors of 1 thread": on_ray(2)}, small, full, args.sentences, args.repeats)
    finally:
        ray.shutdown()
    report(f"{args.sentences} sentences of 1-4 clauses, MiniLM, {args.cpus} CPUs (a local Ray started in "
           f"{ray_start:.1f} s; load average {os.getloadavg()[0]:.1f} at the end)", rows)

    best = max((r for r in rows if r["engine"].startswith("ray")), key=lambda r: r["marginal sentences/s"])
    rate, startup = best["marginal sentences/s"], best["start-up s"]
    report(f"ESTIMATE, not measured: 10 million such sentences with Ray on N machines like this one, each at the "
           f"{rate:.0f} sentences/s of '{best['engine']}', plus its {startup:.0f} s start-up; scaling assumed linear", [
               {"machines": n, "hours": (10_000_000 / (rate * n) + startup) / 3600} for n in (1, 4, 16, 64)])


if __name__ == "__main__":
    main()
