"""The evaluator contract: what one evaluation returns, and how settings are read and checked.

Three outcomes are kept apart on purpose: passed (True), failed (False: the model's answer is
wrong) and undecided (None, with `error`: the evaluator could not tell, e.g. a judge that answered
nonsense or a `$ref` that cannot be resolved). An undecided sample is never a zero score; whoever
aggregates must count it apart, like a failed request is kept out of latency statistics.
"""

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

DETAIL_TEXT_CHARS = 500  # texts echoed into `detail` are cut here: a detail is stored per sample


@dataclass
class Evaluation:
    passed: bool | None  # None = the evaluator could not decide (see `error`)
    score: float | None  # 0..1; None when undecided
    detail: dict[str, Any] = field(default_factory=dict)
    error: str = ""  # why it could not decide; never set together with a pass/fail

    @classmethod
    def verdict(cls, passed: bool, detail: dict[str, Any], score: float | None = None) -> "Evaluation":
        """A decided evaluation; the score defaults to 1 for a pass and 0 for a fail."""
        return cls(passed=passed, score=float(passed) if score is None else score, detail=detail)

    @classmethod
    def undecided(cls, error: str, detail: dict[str, Any] | None = None) -> "Evaluation":
        return cls(passed=None, score=None, detail=detail or {}, error=error)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class SettingsError(ValueError):
    """A bad setting. The message starts with the setting's name, which is also in `.setting`,
    so a form can put the error on the right field."""

    def __init__(self, setting: str, problem: str):
        super().__init__(f"{setting}: {problem}")
        self.setting = setting


class Evaluator(Protocol):
    kind: str

    def validate_settings(self, settings: dict[str, Any]) -> dict[str, Any]: ...

    def evaluate(self, output: str, *, expected: str, settings: dict[str, Any]) -> Evaluation: ...


class SettingsReader:
    """Reads one evaluator's settings into a normalized dict with every default filled in.

    Values must already have their JSON type (a form's JSON field gives them so): "true" is not a
    boolean. `done()` rejects keys nobody read, because a misspelt option would otherwise be
    silently ignored and the evaluation would quietly use the default."""

    def __init__(self, kind: str, settings: dict[str, Any] | None):
        if settings is None:
            settings = {}
        if not isinstance(settings, dict):
            raise SettingsError("settings", "must be an object")
        self.kind = kind
        self.raw = settings
        self.clean: dict[str, Any] = {}

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw.get(name, default)
        if not isinstance(value, bool):
            raise SettingsError(name, f"must be true or false, not {value!r}")
        self.clean[name] = value
        return value

    def number(self, name: str, default: float, *, minimum: float | None = None) -> float:
        value = self.raw.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise SettingsError(name, f"must be a number, not {value!r}")
        if minimum is not None and value < minimum:
            raise SettingsError(name, f"must be at least {minimum}, not {value}")
        self.clean[name] = value
        return value

    def text(self, name: str, default: str = "", *, required: bool = False) -> str:
        value = self.raw.get(name, default)
        if not isinstance(value, str):
            raise SettingsError(name, f"must be text, not {type(value).__name__}")
        if required and not value.strip():
            raise SettingsError(name, "is required")
        self.clean[name] = value
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.raw.get(name, default)
        if value not in choices:
            raise SettingsError(name, f"must be one of {', '.join(choices)}, not {value!r}")
        self.clean[name] = value
        return value

    def value(self, name: str, default: Any) -> Any:
        """A value the caller checks itself; it is stored as returned by `keep`."""
        return self.raw.get(name, default)

    def keep(self, name: str, value: Any) -> None:
        self.clean[name] = value

    def done(self) -> dict[str, Any]:
        unknown = sorted(set(self.raw) - set(self.clean))
        if unknown:
            known = ", ".join(sorted(self.clean)) or "none"
            raise SettingsError(unknown[0], f"unknown setting for {self.kind} (known: {known})")
        return self.clean


class BaseEvaluator:
    """Validates the settings, then evaluates. Bad settings become an undecided evaluation rather
    than an exception that would stop a whole run at its first sample."""

    kind = ""

    def read(self, reader: SettingsReader) -> None:
        """Read every setting of this kind through `reader`."""

    def validate_settings(self, settings: dict[str, Any] | None) -> dict[str, Any]:
        reader = SettingsReader(self.kind, settings)
        self.read(reader)
        return reader.done()

    def evaluate(self, output: str, *, expected: Any = "", settings: dict[str, Any] | None = None) -> Evaluation:
        try:
            clean = self.validate_settings(settings)
        except ValueError as exc:
            return Evaluation.undecided(f"invalid settings: {exc}")
        return self.run(output or "", "" if expected is None else expected, clean)

    def run(self, output: str, expected: Any, settings: dict[str, Any]) -> Evaluation:
        raise NotImplementedError


def clip(text: str, limit: int = DETAIL_TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
