"""Parameter ranges of a sweep in the seed format, expanded exactly.

    {"temperature": {"min": 0.1, "max": 1.0, "step": 0.1}, "top_p": {"min": 0.8, "max": 1.0, "step": 0.05},
     "max_tokens": [150, 300, 500], "seed": 7}

A range is `{"min", "max", "step"}` (the max included when a whole number of steps reaches it), a
list is those values in that order, a single number is one value. Ranges are stepped in decimal
arithmetic from the numbers as written, so 0.1 + 0.2 is 0.3 and 0.1..1.0 by 0.1 is ten values,
never nine and never 0.30000000000000004. Pure Python: forms, the API and the runner share it.

Combinations are the cartesian product in the order of PARAMETERS, the last parameter varying
fastest; combination k is found by mixed-radix decoding, so a batch never stores the product.
"""

import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any


@dataclass(frozen=True)
class Parameter:
    name: str
    integer: bool
    low: float
    high: float
    label: str


PARAMETERS: dict[str, Parameter] = {
    p.name: p
    for p in (
        Parameter("temperature", False, 0.0, 2.0, "Temperature"),
        Parameter("top_p", False, 0.0, 1.0, "top_p"),
        Parameter("max_tokens", True, 1, 200_000, "max_tokens"),
        Parameter("frequency_penalty", False, -2.0, 2.0, "Frequency penalty"),
        Parameter("presence_penalty", False, -2.0, 2.0, "Presence penalty"),
        Parameter("seed", True, 0, 2**31 - 1, "Seed"),
    )
}
MAX_VALUES_PER_PARAMETER = 1_000
MAX_COMBINATIONS = 100_000

Value = int | float
Values = dict[str, list[Value]]


class RangeError(ValueError):
    """A bad range. `field` is the path of the bad part, e.g. "temperature.step"."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def _decimal(field: str, raw: Any) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise RangeError(field, f"a number, not {raw!r}")
    try:
        # str() of a float is its shortest repr: 0.1 stays 0.1, not 0.1000000000000000055…
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        raise RangeError(field, f"a number, not {raw!r}") from None
    if not value.is_finite():
        raise RangeError(field, f"a finite number, not {raw!r}")
    return value


def _checked(parameter: Parameter, field: str, value: Decimal) -> Value:
    if parameter.integer and value != value.to_integral_value():
        raise RangeError(field, f"a whole number, not {value}")
    if not parameter.low <= value <= parameter.high:
        raise RangeError(field, f"between {parameter.low:g} and {parameter.high:g}, not {value}")
    return int(value) if parameter.integer else float(value)


def expand(name: str, spec: Any) -> list[Value]:
    """The values of one parameter, in sweep order."""
    parameter = PARAMETERS.get(name)
    if parameter is None:
        raise RangeError(name, f"not a sweepable parameter (one of: {', '.join(PARAMETERS)})")
    if isinstance(spec, dict):
        unknown = set(spec) - {"min", "max", "step"}
        if unknown:
            raise RangeError(f"{name}.{sorted(unknown)[0]}", "unknown key (a range has min, max and step)")
        for key in ("min", "max", "step"):
            if key not in spec:
                raise RangeError(f"{name}.{key}", "missing")
        low, high, step = (_decimal(f"{name}.{key}", spec[key]) for key in ("min", "max", "step"))
        if step <= 0:
            raise RangeError(f"{name}.step", f"must be greater than 0, not {step}")
        if high < low:
            raise RangeError(f"{name}.max", f"must not be below min ({low}), not {high}")
        count = int((high - low) // step) + 1
        if count > MAX_VALUES_PER_PARAMETER:
            raise RangeError(f"{name}.step", f"gives {count:,} values; at most {MAX_VALUES_PER_PARAMETER:,}")
        return [_checked(parameter, name, low + i * step) for i in range(count)]
    if isinstance(spec, list):
        if not spec:
            raise RangeError(name, "an empty list; give at least one value")
        if len(spec) > MAX_VALUES_PER_PARAMETER:
            raise RangeError(name, f"{len(spec):,} values; at most {MAX_VALUES_PER_PARAMETER:,}")
        values = [_checked(parameter, f"{name}[{i}]", _decimal(f"{name}[{i}]", v)) for i, v in enumerate(spec)]
        seen: set[Value] = set()
        for i, value in enumerate(values):
            if value in seen:
                raise RangeError(f"{name}[{i}]", f"{value:g} is listed twice")
            seen.add(value)
        return values
    return [_checked(parameter, name, _decimal(name, spec))]


def expand_all(ranges: Any) -> Values:
    """Every parameter's values, in PARAMETERS order; RangeError naming the first bad part."""
    if not isinstance(ranges, dict) or not ranges:
        raise RangeError("parameter_ranges", 'an object with at least one parameter, e.g. {"temperature": [0.2, 0.8]}')
    for name in ranges:
        if name not in PARAMETERS:
            raise RangeError(name, f"not a sweepable parameter (one of: {', '.join(PARAMETERS)})")
    values = {name: expand(name, ranges[name]) for name in PARAMETERS if name in ranges}
    total = combination_count(values)
    if total > MAX_COMBINATIONS:
        raise RangeError("parameter_ranges", f"{total:,} combinations; at most {MAX_COMBINATIONS:,}")
    return values


def combination_count(values: Values) -> int:
    return math.prod(len(v) for v in values.values()) if values else 0


def combination(values: Values, index: int) -> dict[str, Value]:
    """The parameters of combination `index` (0-based; the last parameter varies fastest)."""
    if not 0 <= index < combination_count(values):
        raise IndexError(f"combination {index} of {combination_count(values)}")
    chosen: dict[str, Value] = {}
    for name in reversed(list(values)):
        index, position = divmod(index, len(values[name]))
        chosen[name] = values[name][position]
    return {name: chosen[name] for name in values}


def parse_text(name: str, text: str) -> Any:
    """The form's compact notation as a seed-format spec: `0.1:1.0:0.1` (min:max:step),
    `150, 300, 500` (a list) or `0.7` (one value); empty text is None (not swept)."""
    text = text.strip()
    if not text:
        return None
    if ":" in text:
        parts = [p.strip() for p in text.split(":")]
        if len(parts) != 3 or not all(parts):
            raise RangeError(name, f"write min:max:step, e.g. 0.1:1.0:0.1, not {text!r}")
        return dict(zip(("min", "max", "step"), parts, strict=True))
    parts = [p.strip() for p in text.split(",")]
    if len(parts) > 1:
        if not all(parts):
            raise RangeError(name, f"a comma-separated list without empty items, not {text!r}")
        return parts
    return parts[0]


def as_text(spec: Any) -> str:
    """The compact notation of a seed-format spec (the inverse of parse_text, for forms)."""
    if isinstance(spec, dict):
        return f"{spec['min']}:{spec['max']}:{spec['step']}"
    if isinstance(spec, list):
        return ", ".join(str(v) for v in spec)
    return "" if spec is None else str(spec)


def normalized(ranges: dict[str, Any]) -> dict[str, Any]:
    """The ranges as stored: numbers as numbers (the form gives strings), parameters in order."""

    def number(name: str, field: str, raw: Any) -> Value:
        return _checked(PARAMETERS[name], field, _decimal(field, raw)) if not isinstance(raw, dict) else raw

    out: dict[str, Any] = {}
    for name in PARAMETERS:
        if name not in ranges:
            continue
        spec = ranges[name]
        if isinstance(spec, dict):
            out[name] = {k: float(_decimal(f"{name}.{k}", spec[k])) for k in ("min", "max", "step")}
            if PARAMETERS[name].integer:
                out[name] = {k: int(v) for k, v in out[name].items()}
        elif isinstance(spec, list):
            out[name] = [number(name, f"{name}[{i}]", v) for i, v in enumerate(spec)]
        else:
            out[name] = number(name, name, spec)
    return out
