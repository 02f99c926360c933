"""Score imports: plan (parse, convert to percent, check) and apply (one transaction, upserts)."""

from dataclasses import dataclass
from typing import Literal

from django.db import transaction
from django.utils import timezone

from apps.accounts.models import Team
from apps.providers.models import ProviderEndpoint
from apps.scores.importers import (
    ParsedScore,
    ScoreErrors,
    decode_upload,
    read_lm_eval_json,
    read_scores_csv,
)
from apps.scores.models import Benchmark, ModelVariant, Score, ServedVariant

ImportFormat = Literal["csv", "lm_eval_json"]
Scale = Literal["auto", "fraction", "percent"]


@dataclass
class ImportPlan:
    """What an import would write; `scale` says how the file's numbers were read."""

    team: Team
    layout: str  # long | wide | lm_eval_json
    scale: Literal["fraction", "percent"]
    rows: list[ParsedScore]  # values already in percent
    new_variants: list[tuple[str, str]]
    new_benchmarks: list[str]
    updated_scores: int
    simulated: bool = False  # generated (demo) scores: stored with Score.is_simulated

    @property
    def new_scores(self) -> int:
        return len(self.rows) - self.updated_scores


@dataclass(frozen=True)
class ImportSummary:
    """What an import wrote."""

    layout: str
    scale: str
    rows: int
    scores_created: int
    scores_updated: int
    variants_created: int
    benchmarks_created: int


def _resolve_scale(rows: list[ParsedScore], scale: Scale, layout: str) -> Literal["fraction", "percent"]:
    if scale != "auto":
        return scale
    if layout == "lm_eval_json":
        return "fraction"  # lm-evaluation-harness always reports 0–1
    # A file whose every score is within 0–1 is read as fractions; a single larger one means percent.
    return "fraction" if all(abs(r.value) <= 1.0 for r in rows) else "percent"


def scores_import_plan(
    *,
    team: Team,
    content: bytes,
    file_format: ImportFormat = "csv",
    scale: Scale = "auto",
    column_map: dict[str, str] | None = None,
    model_name: str = "",
    quantization: str = "",
    simulated: bool = False,
) -> ImportPlan:
    """Parse and check an uploaded score file against the team's catalog; raise ScoreFileError listing
    every bad cell of the file (unreadable values and out-of-range ones alike) if anything is wrong.
    `simulated` marks generated data (the demo loader), never a user's upload."""
    text = decode_upload(content)
    errors: ScoreErrors
    if file_format == "lm_eval_json":
        layout = "lm_eval_json"
        rows, errors = read_lm_eval_json(text, model_name=model_name, quantization=quantization)
    else:
        layout, rows, errors = read_scores_csv(text, column_map=column_map)
    resolved = _resolve_scale(rows, scale, layout)
    factor = 100.0 if resolved == "fraction" else 1.0

    benchmarks = {b.name.lower(): b for b in Benchmark.objects.filter(team=team)}
    for row in rows:
        row.value *= factor
        if row.stderr is not None:
            row.stderr *= factor
            if row.stderr < 0:
                errors.add(row.row, "stderr", f"{row.stderr / factor:g} is negative.")
        existing = benchmarks.get(row.benchmark.lower())
        maximum = existing.scale_max if existing else 100.0
        if row.value < 0 or row.value > maximum:
            shown = f"{row.value / factor:g}" + (" (a fraction)" if factor != 1 else "")
            name = f" for {row.benchmark}" if row.benchmark else ""
            errors.add(row.row, row.field, f"{shown} is outside 0–{maximum:g} percent{name}.")
    errors.raise_if_any()

    variants = {
        (v.model_name, v.quantization): v.pk
        for v in ModelVariant.objects.filter(team=team).only("model_name", "quantization")
    }
    new_variants = sorted({(r.model_name, r.quantization) for r in rows} - set(variants))
    new_benchmarks = sorted({r.benchmark for r in rows if r.benchmark.lower() not in benchmarks}, key=str.lower)
    existing_pairs = set(
        Score.objects.filter(team=team, origin=Score.Origin.IMPORTED).values_list(
            "variant__model_name", "variant__quantization", "benchmark__name"
        )
    )
    existing_keys = {(m, q, b.lower()) for m, q, b in existing_pairs}
    updated = sum((r.model_name, r.quantization, r.benchmark.lower()) in existing_keys for r in rows)
    return ImportPlan(
        team=team,
        layout=layout,
        scale=resolved,
        rows=rows,
        new_variants=new_variants,
        new_benchmarks=new_benchmarks,
        updated_scores=updated,
        simulated=simulated,
    )


@transaction.atomic
def scores_import_apply(*, plan: ImportPlan) -> ImportSummary:
    """Write a checked plan: create missing variants and benchmarks, upsert every score as an imported one
    (measured scores, written by benchmark runs, are never touched by an import)."""
    team = plan.team
    variants = {(v.model_name, v.quantization): v for v in ModelVariant.objects.filter(team=team)}
    missing = []
    for row in plan.rows:
        key = (row.model_name, row.quantization)
        if key not in variants:
            variants[key] = ModelVariant(
                team=team,
                model_name=row.model_name,
                quantization=row.quantization,
                family=row.family,
                parameters_b=row.parameters_b,
            )
            missing.append(variants[key])
    ModelVariant.objects.bulk_create(missing, batch_size=1000)
    _update_variant_details(variants, plan.rows, created={id(v) for v in missing})
    variants = {(v.model_name, v.quantization): v.pk for v in ModelVariant.objects.filter(team=team)}

    benchmarks = {b.name.lower(): b.pk for b in Benchmark.objects.filter(team=team)}
    new_benchmarks = {}
    for row in plan.rows:
        if row.benchmark.lower() not in benchmarks and row.benchmark.lower() not in new_benchmarks:
            new_benchmarks[row.benchmark.lower()] = Benchmark(team=team, name=row.benchmark)
    Benchmark.objects.bulk_create(new_benchmarks.values())
    benchmarks = {b.name.lower(): b.pk for b in Benchmark.objects.filter(team=team)}

    now = timezone.now()
    scores = [
        Score(
            team=team,
            variant_id=variants[(r.model_name, r.quantization)],
            benchmark_id=benchmarks[r.benchmark.lower()],
            value_pct=r.value,
            stderr_pct=r.stderr,
            n_shot=r.n_shot,
            source=r.source,
            evaluated_at=r.evaluated_at,
            is_simulated=plan.simulated,
            origin=Score.Origin.IMPORTED,
            updated_at=now,
        )
        for r in plan.rows
    ]
    Score.objects.bulk_create(
        scores,
        batch_size=1000,
        update_conflicts=True,
        unique_fields=["variant", "benchmark", "origin"],  # a measured score of the same cell stays as it is
        update_fields=["value_pct", "stderr_pct", "n_shot", "source", "evaluated_at", "is_simulated", "updated_at"],
    )
    return ImportSummary(
        layout=plan.layout,
        scale=plan.scale,
        rows=len(plan.rows),
        scores_created=plan.new_scores,
        scores_updated=plan.updated_scores,
        variants_created=len(missing),
        benchmarks_created=len(new_benchmarks),
    )


def _update_variant_details(variants: dict, rows: list[ParsedScore], *, created: set[int]) -> None:
    """Fill in family / parameter count of existing variants when the file gives them."""
    changed = {}
    for row in rows:
        variant = variants[(row.model_name, row.quantization)]
        if id(variant) in created:
            continue
        if row.family and variant.family != row.family:
            variant.family = row.family
            changed[variant.pk] = variant
        if row.parameters_b is not None and variant.parameters_b != row.parameters_b:
            variant.parameters_b = row.parameters_b
            changed[variant.pk] = variant
    if changed:
        ModelVariant.objects.bulk_update(changed.values(), ["family", "parameters_b"])


def scores_import(**kwargs) -> ImportSummary:
    """Plan and apply in one call (API, commands); raises ScoreFileError and writes nothing if bad."""
    return scores_import_apply(plan=scores_import_plan(**kwargs))


def served_variants_set(*, team: Team, endpoint: ProviderEndpoint, links: dict[str, ModelVariant | None]) -> int:
    """Which catalog variant the endpoint serves under each model name (None: no link). The endpoint and the
    variants must be the team's. Returns how many links are stored for the endpoint afterwards."""
    if endpoint.team_id != team.pk or any(v is not None and v.team_id != team.pk for v in links.values()):
        raise ValueError("The endpoint and the variants must belong to the team.")
    with transaction.atomic():
        for model, variant in links.items():
            if variant is None:
                ServedVariant.objects.filter(team=team, endpoint=endpoint, model=model).delete()
            else:
                ServedVariant.objects.update_or_create(
                    team=team, endpoint=endpoint, model=model, defaults={"variant": variant}
                )
        return ServedVariant.objects.filter(team=team, endpoint=endpoint).count()
