"""Headscope's own data, shipped inside the package: the built-in models' weights, the calendar the dates
model learns from, varied English texts, example probe sets, and stored study results."""

from pathlib import Path

DATA = Path(__file__).resolve().parent
WEIGHTS = DATA / "weights"  # the models trained here (headscope/training/): NAME.safetensors and NAME.json
PROBE_SETS = DATA / "probe_sets"  # example (sentence, from, to) pair sets for POST /api/probe
ONE_HEAD_OR_MANY = DATA / "one_head_or_many.json"  # the results of headscope/training/one_head_or_many.py

PROBE_EXAMPLES = {  # file stem in PROBE_SETS -> what its pairs are (described in docs/probes.md)
    "det_noun": "determiner → its noun (\"the\" → \"cat\"): 45 pairs in 20 sentences",
    "obj_verb": "direct object → its verb (\"mouse\" → \"chased\"): 45 pairs in 45 sentences",
}
