"""Parameter ranges: exact decimal steps, the max included, lists and single values, combinations
decoded in sweep order, and every bad input named by its path."""

import itertools
import math

import pytest

from apps.batches.parameters import (
    MAX_COMBINATIONS,
    RangeError,
    as_text,
    combination,
    combination_count,
    expand,
    expand_all,
    normalized,
    parse_text,
)


def test_a_float_range_steps_exactly_and_includes_the_max():
    assert expand("temperature", {"min": 0.1, "max": 1.0, "step": 0.1}) == [
        0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
    ]  # fmt: skip
    values = expand("top_p", {"min": 0.8, "max": 1.0, "step": 0.05})
    assert values == [0.8, 0.85, 0.9, 0.95, 1.0] and 0.30000000000000004 not in expand(
        "temperature", {"min": 0.1, "max": 0.3, "step": 0.1}
    )


def test_a_max_between_steps_is_not_reached():
    assert expand("temperature", {"min": 0.0, "max": 1.0, "step": 0.3}) == [0.0, 0.3, 0.6, 0.9]


def test_the_seed_example_has_150_combinations():
    """The seed's own example answers 72; 10 temperatures × 5 top_p × 3 max_tokens is 150."""
    values = expand_all({"temperature": {"min": 0.1, "max": 1.0, "step": 0.1},
                         "top_p": {"min": 0.8, "max": 1.0, "step": 0.05}, "max_tokens": [150, 300, 500]})  # fmt: skip
    assert combination_count(values) == 150


def test_lists_and_single_values():
    values = expand_all({"seed": 7, "max_tokens": [500, 150], "temperature": "0.7"})
    assert values == {"temperature": [0.7], "max_tokens": [500, 150], "seed": [7]}
    assert list(values) == ["temperature", "max_tokens", "seed"]  # always in PARAMETERS order


def test_combinations_decode_as_the_cartesian_product_last_parameter_fastest():
    values = expand_all({"temperature": [0.2, 0.8], "top_p": [0.5, 0.9, 1.0], "max_tokens": [64, 128]})
    product = [dict(zip(values, combo, strict=True)) for combo in itertools.product(*values.values())]
    assert [combination(values, i) for i in range(combination_count(values))] == product
    with pytest.raises(IndexError):
        combination(values, 12)


@pytest.mark.parametrize(
    ("ranges", "field"),
    [
        ({"temperature": {"min": 0.1, "max": 1.0, "step": 0}}, "temperature.step"),
        ({"temperature": {"min": 1.0, "max": 0.1, "step": 0.1}}, "temperature.max"),
        ({"temperature": {"min": 0.1, "max": 1.0}}, "temperature.step"),
        ({"temperature": {"min": 0.1, "max": 3.0, "step": 0.5}}, "temperature"),
        ({"top_p": [0.5, 1.5]}, "top_p[1]"),
        ({"max_tokens": [150, 150.5]}, "max_tokens[1]"),
        ({"max_tokens": [150, 150]}, "max_tokens[1]"),
        ({"max_tokens": []}, "max_tokens"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": True}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_k": [1, 2]}, "top_k"),
        ({}, "parameter_ranges"),
        ({"temperature": {"min": 0, "max": 2, "step": 0.0001}}, "temperature.step"),
        (
            {"seed": {"min": 0, "max": 999, "step": 1}, "max_tokens": {"min": 1, "max": 101, "step": 1}},
            "parameter_ranges",
        ),
        ({"temperature": {"min": 0.1, "max": 1, "step": 0.1, "stop": 2}}, "temperature.stop"),
    ],
)
def test_bad_ranges_name_the_part(ranges, field):
    with pytest.raises(RangeError) as error:
        expand_all(ranges)
    assert error.value.field == field and str(error.value).startswith(field)


def test_the_combination_cap_is_counted_before_anything_runs():
    assert (
        combination_count(expand_all({"seed": {"min": 0, "max": 999, "step": 1}, "max_tokens": list(range(1, 101))}))
        == MAX_COMBINATIONS
    )


def test_the_form_notation_round_trips():
    assert parse_text("temperature", "0.1:1.0:0.1") == {"min": "0.1", "max": "1.0", "step": "0.1"}
    assert parse_text("max_tokens", "150, 300,500") == ["150", "300", "500"]
    assert parse_text("seed", " 7 ") == "7" and parse_text("seed", "  ") is None
    with pytest.raises(RangeError, match="min:max:step"):
        parse_text("temperature", "0.1:1.0")
    spec = normalized({"temperature": parse_text("temperature", "0.1:1.0:0.1"), "max_tokens": ["150", "300"]})
    assert spec == {"temperature": {"min": 0.1, "max": 1.0, "step": 0.1}, "max_tokens": [150, 300]}
    assert as_text(spec["temperature"]) == "0.1:1.0:0.1" and as_text(spec["max_tokens"]) == "150, 300"
    assert math.prod(len(v) for v in expand_all(spec).values()) == 20
