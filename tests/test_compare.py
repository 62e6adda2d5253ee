"""The field-by-field comparison the tests of nested answers rely on does catch a difference."""

from tests.compare import differences


def test_nested_records_compare_float_by_float():
    a = [{"name": "L0H0", "metrics": {"sink": 0.5, "entropy": 2.0}, "roles": ["broad"]}]
    assert differences(a, [{"name": "L0H0", "metrics": {"sink": 0.5 + 1e-9, "entropy": 2.0}, "roles": ["broad"]}]) == []
    assert differences(a, [{"name": "L0H0", "metrics": {"sink": 0.51, "entropy": 2.0}, "roles": ["broad"]}]) == [
        "[0].metrics.sink: 0.5 != 0.51"]
    assert differences(a, [{"name": "L0H0", "metrics": {"sink": 0.5, "entropy": 2.0}, "roles": []}]) != []
    assert differences(a, [{"name": "L0H1", "metrics": {"sink": 0.5}, "roles": ["broad"]}]) != []  # name and keys
    assert differences([1.0, None], [1.0, 0.0]) == ["[1]: None != 0.0"]
