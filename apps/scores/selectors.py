"""Read models shared by the pages and the API: the leaderboard and the quantization view."""

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from apps.accounts.models import Team
from apps.scores.models import FULL_PRECISION, Benchmark, ModelVariant, Score


@dataclass
class LeaderboardRow:
    variant_id: int
    model_name: str
    quantization: str
    family: str
    parameters_b: float | None
    scores: dict[str, float | None]  # benchmark name → percent, None where the variant has none
    average_pct: float | None  # mean over the higher-is-better benchmarks the variant has
    benchmark_count: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)  # flat: a shallow copy is the JSON shape (asdict deep-copies, slowly)


@dataclass
class Leaderboard:
    benchmarks: list[Benchmark]
    rows: list[LeaderboardRow]


def _variant_queryset(team: Team, family: str | None, quantization: str | None):
    variants = ModelVariant.objects.filter(team=team)
    if family:
        variants = variants.filter(family__iexact=family)
    if quantization:
        variants = variants.filter(quantization__iexact=quantization.strip())
    return variants


def leaderboard(
    *,
    team: Team,
    benchmark_names: list[str] | None = None,
    family: str | None = None,
    quantization: str | None = None,
    sort: str = "average",
    descending: bool = True,
) -> Leaderboard:
    """Every variant with scores, one column per benchmark, sorted; missing values sort last."""
    benchmarks = list(Benchmark.objects.filter(team=team).order_by("name"))
    if benchmark_names:
        wanted = {n.lower() for n in benchmark_names}
        benchmarks = [b for b in benchmarks if b.name.lower() in wanted]
    by_id = {b.pk: b for b in benchmarks}
    variants = {
        v["id"]: v
        for v in _variant_queryset(team, family, quantization).values(
            "id", "model_name", "quantization", "family", "parameters_b"
        )
    }
    values: dict[int, dict[str, float]] = defaultdict(dict)
    score_rows = Score.objects.filter(team=team, benchmark_id__in=by_id, variant_id__in=variants)
    for variant_id, benchmark_id, value in score_rows.values_list("variant_id", "benchmark_id", "value_pct"):
        values[variant_id][by_id[benchmark_id].name] = value

    averaged = {b.name for b in benchmarks if b.higher_is_better}
    rows = []
    for variant_id, scores in values.items():
        variant = variants[variant_id]
        counted = [v for name, v in scores.items() if name in averaged]
        rows.append(
            LeaderboardRow(
                variant_id=variant_id,
                model_name=variant["model_name"],
                quantization=variant["quantization"],
                family=variant["family"],
                parameters_b=variant["parameters_b"],
                scores={b.name: scores.get(b.name) for b in benchmarks},
                average_pct=float(np.mean(counted)) if counted else None,
                benchmark_count=len(scores),
            )
        )
    rows.sort(key=lambda r: (r.model_name.lower(), r.quantization))
    if sort != "model":
        key = (lambda r: r.average_pct) if sort == "average" else (lambda r: r.scores.get(sort))
        present = [r for r in rows if key(r) is not None]
        missing = [r for r in rows if key(r) is None]
        present.sort(key=key, reverse=descending)  # stable: ties stay in name order
        rows = present + missing
    elif descending:
        rows.reverse()
    return Leaderboard(benchmarks=benchmarks, rows=rows)


@dataclass
class QuantizationDelta:
    base_pct: float
    quantized_pct: float
    points_lost: float  # positive = the quantized variant is worse


@dataclass
class QuantizationRow:
    variant_id: int
    model_name: str
    quantization: str
    base_variant_id: int
    base_quantization: str
    deltas: dict[str, QuantizationDelta]  # only benchmarks both variants have
    mean_points_lost: float | None
    benchmark_count: int

    def as_dict(self) -> dict:
        data = dict(self.__dict__)
        data["deltas"] = {name: dict(d.__dict__) for name, d in self.deltas.items()}
        return data


@dataclass
class QuantizationReport:
    benchmarks: list[Benchmark]
    rows: list[QuantizationRow]
    without_base: list[str] = field(default_factory=list)  # "model · quantization" with no FP base


def quantization_report(*, team: Team, family: str | None = None, model_name: str | None = None) -> QuantizationReport:
    """Each quantized variant against its model's full-precision base (BF16, else FP16, else FP32)."""
    benchmarks = list(Benchmark.objects.filter(team=team).order_by("name"))
    by_id = {b.pk: b for b in benchmarks}
    variants = _variant_queryset(team, family, None)
    if model_name:
        variants = variants.filter(model_name=model_name)
    variants = list(variants.values("id", "model_name", "quantization"))
    values: dict[int, dict[int, float]] = defaultdict(dict)
    score_rows = Score.objects.filter(team=team, variant_id__in=[v["id"] for v in variants])
    for variant_id, benchmark_id, value in score_rows.values_list("variant_id", "benchmark_id", "value_pct"):
        values[variant_id][benchmark_id] = value

    by_model: dict[str, list[dict]] = defaultdict(list)
    for variant in variants:
        by_model[variant["model_name"]].append(variant)
    rows, without_base = [], []
    for name in sorted(by_model, key=str.lower):
        family_variants = by_model[name]
        quants = {v["quantization"]: v for v in family_variants}
        base = next((quants[q] for q in FULL_PRECISION if q in quants), None)
        for variant in sorted(family_variants, key=lambda v: v["quantization"]):
            if variant["quantization"] in FULL_PRECISION:
                continue
            if base is None:
                without_base.append(f"{name} · {variant['quantization']}")
                continue
            base_values, quant_values = values[base["id"]], values[variant["id"]]
            deltas: dict[str, QuantizationDelta] = {}
            for benchmark_id in base_values.keys() & quant_values.keys():
                benchmark = by_id[benchmark_id]
                base_value, quant_value = base_values[benchmark_id], quant_values[benchmark_id]
                diff = base_value - quant_value if benchmark.higher_is_better else quant_value - base_value
                deltas[benchmark.name] = QuantizationDelta(base_value, quant_value, diff)
            lost = [d.points_lost for d in deltas.values()]
            rows.append(
                QuantizationRow(
                    variant_id=variant["id"],
                    model_name=name,
                    quantization=variant["quantization"],
                    base_variant_id=base["id"],
                    base_quantization=base["quantization"],
                    deltas=deltas,
                    mean_points_lost=float(np.mean(lost)) if lost else None,
                    benchmark_count=len(lost),
                )
            )
    used = {name for row in rows for name in row.deltas}
    return QuantizationReport(
        benchmarks=[b for b in benchmarks if b.name in used], rows=rows, without_base=without_base
    )
