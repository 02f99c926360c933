"""Length distributions: seeded draws, bounds, means within sampling tolerance, validation naming the path."""

import math

import numpy as np
import pytest

from apps.workloads.engine.distributions import lognormal_parameters, sample_lengths, validate_distribution

N = 20_000


def _rng(seed: int = 7) -> np.random.Generator:
    return np.random.default_rng(seed)


def _assert_mean_close(values: np.ndarray, expected_mean: float, expected_stdev: float) -> None:
    """The sample mean is within 5 standard errors (plus rounding's half token) of the expected mean."""
    tolerance = 5 * expected_stdev / math.sqrt(len(values)) + 0.5
    assert abs(values.mean() - expected_mean) <= tolerance, (values.mean(), expected_mean, tolerance)


@pytest.mark.parametrize(
    "spec",
    [
        {"dist": "fixed", "value": 5},
        {"dist": "uniform", "min": 3, "max": 90},
        {"dist": "normal", "mean": 200, "stdev": 40},
        {"dist": "lognormal", "average": 900, "median_ratio": 0.7, "max": 8000},
        {"dist": "lognormal", "mean": 5.0, "sigma": 0.5},
        {"dist": "empirical", "edges": [1, 10, 100], "weights": [1, 3]},
    ],
)
def test_draws_are_seeded_integers_at_least_one(spec):
    """The same seed gives the same lengths; every length is an integer ≥ 1."""
    a, b = sample_lengths(spec, 500, _rng(1)), sample_lengths(spec, 500, _rng(1))
    assert a.dtype == np.int64 and a.shape == (500,)
    assert np.array_equal(a, b)
    assert a.min() >= 1
    if spec["dist"] != "fixed":
        assert not np.array_equal(a, sample_lengths(spec, 500, _rng(2)))


def test_fixed_gives_the_value():
    """fixed{value} draws only its value."""
    assert set(sample_lengths({"dist": "fixed", "value": 42}, 100, _rng()).tolist()) == {42}


def test_uniform_includes_both_ends_and_centres():
    """uniform{min,max} draws every integer of [min, max], both ends included, with the mean at the middle."""
    values = sample_lengths({"dist": "uniform", "min": 10, "max": 20}, N, _rng())
    assert set(values.tolist()) == set(range(10, 21))
    _assert_mean_close(values, 15, math.sqrt((11**2 - 1) / 12))


def test_normal_mean_and_default_bounds():
    """normal draws centre on the mean, and the default bounds are max(1, mean − 5σ) and mean + 5σ."""
    values = sample_lengths({"dist": "normal", "mean": 500, "stdev": 50}, N, _rng())
    _assert_mean_close(values, 500, 50)
    assert abs(values.std() - 50) < 50 * 5 / math.sqrt(2 * N) + 1
    wide = sample_lengths({"dist": "normal", "mean": 20, "stdev": 30}, N, _rng())
    assert wide.min() == 1  # max(1, 20 − 150) clamps the left tail at 1, not 0 or below
    assert wide.max() <= 170


def test_normal_honours_explicit_bounds():
    """Explicit min and max clamp every draw."""
    values = sample_lengths({"dist": "normal", "mean": 100, "stdev": 100, "min": 80, "max": 120}, N, _rng())
    assert values.min() == 80 and values.max() == 120


def test_normal_with_zero_stdev_is_fixed():
    """stdev 0 gives the (rounded) mean every time."""
    assert set(sample_lengths({"dist": "normal", "mean": 64.4, "stdev": 0}, 50, _rng()).tolist()) == {64}


def test_lognormal_from_average_and_median_ratio():
    """{average, median_ratio}: the draws' mean is the average and their median is average · ratio."""
    spec = {"dist": "lognormal", "average": 900, "median_ratio": 0.8}
    mu, sigma = lognormal_parameters(spec)
    assert math.isclose(math.exp(mu + sigma**2 / 2), 900)
    values = sample_lengths(spec, N, _rng())
    stdev = 900 * math.sqrt(math.exp(sigma**2) - 1)
    _assert_mean_close(values, 900, stdev)
    assert abs(np.median(values) - 720) < 0.03 * 720


def test_lognormal_from_underlying_normal_and_max():
    """{mean, sigma} are the underlying normal's: the median is exp(mean); max clamps the tail."""
    values = sample_lengths({"dist": "lognormal", "mean": 6.0, "sigma": 1.0, "max": 2000}, N, _rng())
    assert abs(np.median(values) - math.exp(6.0)) < 0.05 * math.exp(6.0)
    assert values.max() == 2000


def test_empirical_bins_by_weight_and_stays_inside():
    """empirical picks bins in proportion to their weights and draws inside them; the last edge is included."""
    edges, weights = [1, 5, 9, 13], [1, 0, 3]
    values = sample_lengths({"dist": "empirical", "edges": edges, "weights": weights}, N, _rng())
    assert not ((values >= 5) & (values < 9)).any()  # a weight of 0 is never drawn
    first = ((values >= 1) & (values < 5)).mean()
    assert abs(first - 0.25) < 5 * math.sqrt(0.25 * 0.75 / N)
    assert set(values[values >= 9].tolist()) == {9, 10, 11, 12, 13}
    assert set(values[values < 5].tolist()) == {1, 2, 3, 4}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"dist": "normal", "mean": 100, "stdev": -1}, "input_tokens.stdev: must be ≥ 0"),
        ({"dist": "gamma"}, "input_tokens.dist: must be one of"),
        ("300", "input_tokens: must be an object"),
        ({"dist": "fixed"}, "input_tokens.value: is required for fixed"),
        ({"dist": "fixed", "value": 0}, "input_tokens.value: must be an integer ≥ 1"),
        ({"dist": "fixed", "value": True}, "input_tokens.value: must be an integer ≥ 1"),
        ({"dist": "fixed", "value": 3, "spread": 1}, "input_tokens.spread: unknown key"),
        ({"dist": "uniform", "min": 9, "max": 3}, "input_tokens.max: must be ≥ min (9)"),
        ({"dist": "uniform", "min": 2.5, "max": 3}, "input_tokens.min: must be an integer ≥ 1"),
        ({"dist": "normal", "mean": 100, "stdev": 5, "min": 200}, "input_tokens.max: must be ≥ min"),
        ({"dist": "lognormal", "average": 900}, "input_tokens.median_ratio: is required"),
        ({"dist": "lognormal", "average": 900, "median_ratio": 1.5}, "input_tokens.median_ratio: must be in (0, 1]"),
        ({"dist": "lognormal", "mean": 5, "sigma": 1, "average": 9}, "input_tokens: give either mean and sigma"),
        ({"dist": "lognormal", "mean": 5, "sigma": -1}, "input_tokens.sigma: must be ≥ 0"),
        (
            {"dist": "empirical", "edges": [1, 5, 5], "weights": [1, 1]},
            "input_tokens.edges: must be strictly increasing",
        ),
        (
            {"dist": "empirical", "edges": [1, 5, 9], "weights": [1]},
            "input_tokens.weights: must have one weight per bin",
        ),
        ({"dist": "empirical", "edges": [1, 5], "weights": [0]}, "input_tokens.weights: must not all be 0"),
    ],
)
def test_validation_names_the_path(spec, message):
    """Each problem comes back as a message that starts with the key's path; nothing raises."""
    errors = validate_distribution(spec, "input_tokens")
    assert any(e.startswith(message) for e in errors), errors


def test_valid_specs_have_no_errors_and_bad_ones_refuse_to_sample():
    """A valid spec validates clean; sampling a bad one raises ValueError with the messages."""
    assert validate_distribution({"dist": "normal", "mean": 100, "stdev": 10, "min": 50}, "x") == []
    with pytest.raises(ValueError, match="stdev: must be ≥ 0"):
        sample_lengths({"dist": "normal", "mean": 100, "stdev": -3}, 10, _rng())
