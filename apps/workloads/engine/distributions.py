"""Length distributions of a workload spec: validate a spec dict, then draw integer lengths ≥ 1.

A spec is a dict with a `dist` key and that distribution's parameters:

* `fixed{value}`: every draw is `value`.
* `uniform{min, max}`: integers drawn uniformly from [min, max], both ends included.
* `normal{mean, stdev, min?, max?}`: `round(clamp(N(mean, stdev²), min, max))`. The bounds default to
  `min = max(1, mean − 5·stdev)` and `max = mean + 5·stdev` (guidellm's integer range sampler does the same),
  so a long tail never produces a zero or negative length.
* `lognormal`: `round(clamp(exp(N(μ, σ²)), 1, max))`, given either
  `{mean: μ, sigma: σ}` (the parameters of the underlying normal), or
  `{average, median_ratio}`: the median is `average · median_ratio` and, since a lognormal's mean is
  `exp(μ + σ²/2)` and its median `exp(μ)`, `μ = ln(average · median_ratio)` and `σ = sqrt(−2 · ln(median_ratio))`
  (so `median_ratio` is in (0, 1]; 1 means no spread). `max` is optional.
* `empirical{edges[], weights[]}`: pick bin i with probability `weights[i] / Σ weights`, then an integer uniformly
  within it. Bins follow `numpy.histogram`: [edges[i], edges[i+1]) except the last, which includes its right edge.

Draws use a `numpy.random.Generator` (the same family as `loadgen.schedule`), so a seed fixes the lengths.
"""

import itertools
import math
from collections.abc import Mapping
from numbers import Real
from typing import Any

import numpy as np

DISTRIBUTIONS: dict[str, tuple[set[str], set[str]]] = {
    # name: (required keys, optional keys), not counting "dist"
    "fixed": ({"value"}, set()),
    "uniform": ({"min", "max"}, set()),
    "normal": ({"mean", "stdev"}, {"min", "max"}),
    "lognormal": (set(), {"mean", "sigma", "average", "median_ratio", "max"}),
    "empirical": ({"edges", "weights"}, set()),
}


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int_at_least_1(spec: Mapping, key: str, path: str, errors: list[str]) -> None:
    if key in spec and not (_is_int(spec[key]) and spec[key] >= 1):
        errors.append(f"{path}.{key}: must be an integer ≥ 1")


def validate_distribution(spec: Any, path: str) -> list[str]:
    """Every problem with a distribution spec, each message starting with the key's path (`input_tokens.stdev: …`).

    Returns an empty list when the spec can be sampled; never raises.
    """
    if not isinstance(spec, Mapping):
        return [f"{path}: must be an object with a 'dist' key"]
    name = spec.get("dist")
    if name not in DISTRIBUTIONS:
        return [f"{path}.dist: must be one of {', '.join(DISTRIBUTIONS)}"]
    required, optional = DISTRIBUTIONS[name]
    errors = [f"{path}.{key}: is required for {name}" for key in sorted(required - spec.keys())]
    errors += [f"{path}.{key}: unknown key for {name}" for key in sorted(spec.keys() - required - optional - {"dist"})]
    if errors:
        return errors
    if name == "fixed":
        _check_int_at_least_1(spec, "value", path, errors)
    elif name == "uniform":
        _validate_uniform(spec, path, errors)
    elif name == "normal":
        _validate_normal(spec, path, errors)
    elif name == "lognormal":
        _validate_lognormal(spec, path, errors)
    else:
        _validate_empirical(spec, path, errors)
    return errors


def _validate_uniform(spec: Mapping, path: str, errors: list[str]) -> None:
    _check_int_at_least_1(spec, "min", path, errors)
    _check_int_at_least_1(spec, "max", path, errors)
    if not errors and spec["min"] > spec["max"]:
        errors.append(f"{path}.max: must be ≥ min ({spec['min']})")


def _validate_normal(spec: Mapping, path: str, errors: list[str]) -> None:
    if not (_is_number(spec["mean"]) and spec["mean"] >= 1):
        errors.append(f"{path}.mean: must be a number ≥ 1")
    if not (_is_number(spec["stdev"]) and spec["stdev"] >= 0):
        errors.append(f"{path}.stdev: must be ≥ 0")
    _check_int_at_least_1(spec, "min", path, errors)
    _check_int_at_least_1(spec, "max", path, errors)
    if not errors:
        low, high = _normal_bounds(spec)
        if low > high:
            errors.append(f"{path}.max: must be ≥ min ({low:g})")


def _validate_lognormal(spec: Mapping, path: str, errors: list[str]) -> None:
    keys = set(spec)
    by_normal, by_average = {"mean", "sigma"}, {"average", "median_ratio"}
    if keys & by_normal and keys & by_average:
        errors.append(f"{path}: give either mean and sigma, or average and median_ratio, not both")
        return
    wanted = by_normal if keys & by_normal else by_average
    errors += [f"{path}.{key}: is required for lognormal" for key in sorted(wanted - keys)]
    if errors:
        return
    if wanted is by_normal:
        if not _is_number(spec["mean"]):
            errors.append(f"{path}.mean: must be a number (the mean of the underlying normal)")
        if not (_is_number(spec["sigma"]) and spec["sigma"] >= 0):
            errors.append(f"{path}.sigma: must be ≥ 0")
    else:
        if not (_is_number(spec["average"]) and spec["average"] >= 1):
            errors.append(f"{path}.average: must be a number ≥ 1")
        if not (_is_number(spec["median_ratio"]) and 0 < spec["median_ratio"] <= 1):
            errors.append(f"{path}.median_ratio: must be in (0, 1] (a lognormal's median is below its average)")
    _check_int_at_least_1(spec, "max", path, errors)


def _validate_empirical(spec: Mapping, path: str, errors: list[str]) -> None:
    edges, weights = spec["edges"], spec["weights"]
    if not (isinstance(edges, list) and len(edges) >= 2 and all(_is_int(e) and e >= 1 for e in edges)):
        errors.append(f"{path}.edges: must be a list of at least 2 integers ≥ 1")
    elif any(b <= a for a, b in itertools.pairwise(edges)):
        errors.append(f"{path}.edges: must be strictly increasing")
    if not (isinstance(weights, list) and all(_is_number(w) and w >= 0 for w in weights)):
        errors.append(f"{path}.weights: must be a list of numbers ≥ 0")
    elif not sum(weights) > 0:
        errors.append(f"{path}.weights: must not all be 0")
    if not errors and len(weights) != len(edges) - 1:
        errors.append(f"{path}.weights: must have one weight per bin ({len(edges) - 1}), not {len(weights)}")


def _normal_bounds(spec: Mapping) -> tuple[float, float]:
    mean, stdev = spec["mean"], spec["stdev"]
    return spec.get("min", max(1.0, mean - 5 * stdev)), spec.get("max", mean + 5 * stdev)


def lognormal_parameters(spec: Mapping) -> tuple[float, float]:
    """(μ, σ) of the underlying normal, from either parameterisation (see the module docstring)."""
    if "average" in spec:
        ratio = spec["median_ratio"]
        return math.log(spec["average"] * ratio), math.sqrt(-2.0 * math.log(ratio))
    return float(spec["mean"]), float(spec["sigma"])


def sample_lengths(spec: Mapping, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` integer lengths (int64, all ≥ 1) drawn from `spec`; ValueError listing the problems of a bad spec."""
    errors = validate_distribution(spec, "distribution")
    if errors:
        raise ValueError("; ".join(errors))
    name = spec["dist"]
    if name == "fixed":
        values = np.full(n, spec["value"], dtype=np.int64)
    elif name == "uniform":
        values = rng.integers(spec["min"], spec["max"], size=n, endpoint=True)
    elif name == "normal":
        low, high = _normal_bounds(spec)
        values = np.rint(np.clip(rng.normal(spec["mean"], spec["stdev"], size=n), low, high))
    elif name == "lognormal":
        mu, sigma = lognormal_parameters(spec)
        values = np.rint(np.clip(rng.lognormal(mu, sigma, size=n), 1, spec.get("max", np.inf)))
    else:
        values = _sample_empirical(spec["edges"], spec["weights"], n, rng)
    return np.maximum(values.astype(np.int64), 1)


def _sample_empirical(edges: list[int], weights: list[float], n: int, rng: np.random.Generator) -> np.ndarray:
    p = np.asarray(weights, dtype=float)
    bins = rng.choice(len(p), size=n, p=p / p.sum())
    low = np.asarray(edges[:-1], dtype=np.int64)[bins]
    high = np.asarray(edges[1:], dtype=np.int64)[bins] - 1  # the right edge belongs to the next bin ...
    high[bins == len(p) - 1] += 1  # ... except for the last bin, as numpy.histogram counts it
    return rng.integers(low, high, endpoint=True)


SECONDS_DISTRIBUTIONS = ("fixed", "uniform", "normal", "lognormal")


def sample_seconds(spec: Mapping, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` durations in seconds (float64, all ≥ 0) drawn from `spec`: think times and gaps.

    The shapes of the token lengths with real values and no rounding: `fixed{value}`, `uniform{min, max}`
    (continuous), `normal{mean, stdev, min?, max?}` clamped to [max(0, mean − 5σ), mean + 5σ] by default, and
    `lognormal` (either parameterisation) clamped to [0, max]. spec.validate_seconds checks a spec; a bad one here
    raises ValueError.
    """
    name = spec.get("dist") if isinstance(spec, Mapping) else None
    if name not in SECONDS_DISTRIBUTIONS:
        raise ValueError(f"distribution.dist: must be one of {', '.join(SECONDS_DISTRIBUTIONS)}")
    missing = sorted(DISTRIBUTIONS[name][0] - spec.keys())
    if missing:
        raise ValueError("; ".join(f"distribution.{key}: is required for {name}" for key in missing))
    if name == "fixed":
        values = np.full(n, float(spec["value"]))
    elif name == "uniform":
        values = rng.uniform(spec["min"], spec["max"], size=n)
    elif name == "normal":
        mean, stdev = float(spec["mean"]), float(spec["stdev"])
        low = spec.get("min") if spec.get("min") is not None else max(0.0, mean - 5 * stdev)
        high = spec.get("max") if spec.get("max") is not None else mean + 5 * stdev
        values = np.clip(rng.normal(mean, stdev, size=n), low, high)
    else:
        mu, sigma = lognormal_parameters(spec)
        high = spec.get("max") if spec.get("max") is not None else np.inf
        values = np.clip(rng.lognormal(mu, sigma, size=n), 0.0, high)
    return np.maximum(values.astype(np.float64), 0.0)
