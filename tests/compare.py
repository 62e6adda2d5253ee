"""Comparing nested answers field by field: pytest.approx takes flat lists and dicts only (pytest 9
refuses nested ones), so records of metrics are walked here and every float compared on its own."""

import math


def differences(actual, expected, rel: float = 1e-6, abs: float = 0.0, path: str = "") -> list[str]:
    """Where two nested structures of dicts, lists, floats and other values differ: each path with both
    values. Floats (and ints against floats) are equal within rel or abs; everything else must be equal."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or actual.keys() != expected.keys():
            return [f"{path or '.'}: keys {sorted(actual) if isinstance(actual, dict) else actual!r} != {sorted(expected)}"]
        return [d for k in expected for d in differences(actual[k], expected[k], rel, abs, f"{path}.{k}")]
    if isinstance(expected, list | tuple):
        if not isinstance(actual, list | tuple) or len(actual) != len(expected):
            return [f"{path or '.'}: {actual!r} != {expected!r}"]
        return [d for i, (a, e) in enumerate(zip(actual, expected)) for d in differences(a, e, rel, abs, f"{path}[{i}]")]
    numbers = (int, float)
    if isinstance(expected, float) and isinstance(actual, numbers) and not isinstance(actual, bool):
        if math.isclose(actual, expected, rel_tol=rel, abs_tol=abs) or (math.isnan(actual) and math.isnan(expected)):
            return []
        return [f"{path}: {actual!r} != {expected!r}"]
    return [] if actual == expected else [f"{path}: {actual!r} != {expected!r}"]
