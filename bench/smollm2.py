"""smollm2 (SmolLM2-135M as a GGUF file) against a bare transformers forward of the same model, same run.

    python -m bench.smollm2            every row
    python -m bench.smollm2 --start    the starts only

Rows: the first start (dequantize into a fresh cache) and the second (from the cache, median of 3), in fresh
processes as a user starts them, against a bare transformers start of the same cached folder (import, config,
tokenizer and AutoModelForCausalLM.from_pretrained, eager attention, float32), each second start right after a bare
one; our analysis (patterns and tokens) at 128 and 512 tokens against transformers' own forward with
output_attentions on the same weights; the resident memory of `headscope serve --model minilm --model smollm2`.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.common import ServerProcess, interleaved, report

START = ("import time, sys; t = time.perf_counter(); from headscope.models.registry import load_model; "
         "load_model('smollm2'); print(time.perf_counter() - t)")


BARE = ("import time, sys; t = time.perf_counter(); import torch; from transformers import AutoConfig, "
        "AutoModelForCausalLM, AutoTokenizer; p = sys.argv[1]; AutoConfig.from_pretrained(p); "
        "AutoTokenizer.from_pretrained(p); AutoModelForCausalLM.from_pretrained(p, dtype=torch.float32, "
        "attn_implementation='eager'); print(time.perf_counter() - t)")


def start_seconds(cache: str, code: str = START, *args: str) -> float:
    done = subprocess.run([sys.executable, "-c", code, *args], env={**os.environ, "HEADSCOPE_CACHE": cache},
                          capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    from headscope.models.hf.gguf import load_gguf, smollm2_file

    rows = []
    with tempfile.TemporaryDirectory() as cache:
        first = start_seconds(cache)
        folder = next((Path(cache) / "gguf").glob("[0-9a-f]*"))
        bare, second = [], []
        for _ in range(3):
            bare.append(start_seconds(cache, BARE, str(folder)))
            second.append(start_seconds(cache))
        rows.append({"what": "start: load_model('smollm2') in a fresh process", "first (dequantize) s": first,
                     "second (cache) s, median of 3": statistics.median(second),
                     "bare transformers start s, median of 3": statistics.median(bare),
                     "ratio": statistics.median(second) / statistics.median(bare)})
        report("smollm2: starting", rows)
        if "--start" in sys.argv:
            return
        model = load_gguf("smollm2", smollm2_file(), Path(cache))
    net, tokenizer = model.net, model.tokenizer
    rows = []
    for tokens in (128, 512):
        ids = torch.randint(100, 40000, (1, tokens))
        text = tokenizer.decode(ids[0])
        ids = tokenizer(text, return_tensors="pt")["input_ids"][:, :tokens]
        text = tokenizer.decode(ids[0])

        def bare():
            with torch.no_grad():
                net(input_ids=ids, output_attentions=True)

        times = interleaved({"bare": bare, "analysis": lambda: model.analyze(text, truncate=True)}, seconds=10)
        rows.append({"tokens": tokens, "bare transformers ms": times["bare"] * 1e3,
                     "our analysis ms": times["analysis"] * 1e3, "ratio": times["analysis"] / times["bare"]})
    report("smollm2: one text, patterns of all 270 heads", rows)
    with tempfile.TemporaryDirectory() as cache:
        start_seconds(cache)  # fill the cache first
        with ServerProcess(("minilm", "smollm2"), env={"HEADSCOPE_CACHE": cache}) as server:
            import httpx

            for model_name in ("minilm", "smollm2"):
                httpx.post(server.url + "/api/attention", json={"text": "The cat sat on the mat.",
                                                                "model": model_name}, timeout=120)
            time.sleep(2)
            report("serving minilm + smollm2", [{"resident MB after one answer each": server.rss_mb()}])


if __name__ == "__main__":
    main()
