"""Storing performance runs: samples through COPY (PostgreSQL) or executemany (SQLite), and
their summary computed once with numpy."""

from dataclasses import dataclass

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction

from apps.accounts.models import Team
from apps.hardware.models import Deployment, HardwareProfile, PerformanceRun, RequestSample, RunSummary
from apps.hardware.parsed import ParsedRun, ParsedSample
from apps.hardware.stats import SampleColumns, summarize
from apps.scores.models import ModelVariant

SAMPLE_COLUMNS = (
    "run_id", "index", "error_code", "error_message", "ttft_ms", "e2e_ms", "input_tokens", "output_tokens",
    "mean_itl_ms", "itl_ms", "start_offset_ms",
)  # fmt: skip


def _itl_bytes(gaps: list[float] | None) -> bytes | None:
    return None if gaps is None else np.asarray(gaps, dtype="<f8").tobytes()


def itl_from_bytes(raw) -> np.ndarray | None:
    """Inter-token gaps as stored (float64 little-endian) back to an array."""
    return None if raw is None else np.frombuffer(bytes(raw), dtype="<f8")


def _sample_row(run_id: int, s: ParsedSample) -> tuple:
    return (
        run_id, s.index, s.error_code, s.error_message, s.ttft_ms, s.e2e_ms, s.input_tokens, s.output_tokens,
        s.mean_itl_ms, _itl_bytes(s.itl_ms), s.start_offset_ms,
    )  # fmt: skip


def samples_store(*, run: PerformanceRun, samples: list[ParsedSample]) -> int:
    """Write a run's samples in bulk: COPY on PostgreSQL, one executemany on SQLite."""
    table = RequestSample._meta.db_table
    columns = ", ".join(f'"{c}"' for c in SAMPLE_COLUMNS)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for sample in samples:
                    copy.write_row(_sample_row(run.pk, sample))
        else:
            placeholders = ", ".join(["%s"] * len(SAMPLE_COLUMNS))
            cursor.executemany(
                f"INSERT INTO {table} ({columns}) VALUES ({placeholders})",
                [_sample_row(run.pk, s) for s in samples],
            )
    return len(samples)


def _columns_from_parsed(samples: list[ParsedSample]) -> SampleColumns:
    def column(attribute: str) -> np.ndarray:
        values = (getattr(s, attribute) for s in samples)
        return np.fromiter((np.nan if v is None else v for v in values), dtype=float, count=len(samples))

    return SampleColumns(
        ok=np.fromiter((not s.error_code for s in samples), dtype=bool, count=len(samples)),
        error_codes=[s.error_code for s in samples],
        ttft_ms=column("ttft_ms"),
        e2e_ms=column("e2e_ms"),
        input_tokens=column("input_tokens"),
        output_tokens=column("output_tokens"),
        mean_itl_ms=column("mean_itl_ms"),
        itl_gaps_ms=[None if s.itl_ms is None else np.asarray(s.itl_ms, dtype=float) for s in samples],
        start_offset_ms=column("start_offset_ms"),
    )


def _columns_from_db(run: PerformanceRun) -> SampleColumns:
    rows = (
        RequestSample.objects.filter(run=run)
        .order_by("index")
        .values_list(
            "error_code",
            "ttft_ms",
            "e2e_ms",
            "input_tokens",
            "output_tokens",
            "mean_itl_ms",
            "itl_ms",
            "start_offset_ms",
        )
    )
    return SampleColumns.from_rows([(*r[:6], itl_from_bytes(r[6]), r[7]) for r in rows])


def _slo(run: PerformanceRun) -> dict:
    return {"ttft_ms": run.slo_ttft_ms, "tpot_ms": run.slo_tpot_ms, "e2e_ms": run.slo_e2e_ms}


def _save_summary(run: PerformanceRun, columns: SampleColumns) -> RunSummary:
    figures = summarize(columns, duration_s=run.duration_s, slo=_slo(run))
    summary, _ = RunSummary.objects.update_or_create(
        run=run,
        defaults={
            "source": RunSummary.Source.SAMPLES,
            "request_count": figures.request_count,
            "error_count": figures.error_count,
            "errors_by_code": figures.errors_by_code,
            "metrics": figures.metrics,
            "itl_source": figures.itl_source,
            "duration_s": figures.duration_s,
            "request_throughput_rps": figures.request_throughput_rps,
            "output_token_throughput_tps": figures.output_token_throughput_tps,
            "total_token_throughput_tps": figures.total_token_throughput_tps,
            "goodput_rps": figures.goodput_rps,
            "goodput_slo": figures.goodput_slo,
        },
    )
    return summary


def run_summary_compute(*, run: PerformanceRun) -> RunSummary | None:
    """Recompute a run's summary from its stored samples (after an SLO change, say).

    A run imported without samples, or with only a random subset of them, keeps the summary
    its tool reported."""
    summary = RunSummary.objects.filter(run=run).first()
    if summary is not None and summary.source == RunSummary.Source.REPORTED:
        return summary
    if not RequestSample.objects.filter(run=run).exists():
        return summary
    return _save_summary(run, _columns_from_db(run))


def _reported_summary(run: PerformanceRun, parsed: ParsedRun) -> RunSummary:
    reported = parsed.reported
    return RunSummary.objects.create(
        run=run,
        source=RunSummary.Source.REPORTED,
        request_count=reported.request_count,
        error_count=reported.error_count,
        errors_by_code={},
        metrics=reported.metrics,
        itl_source="reported",
        duration_s=run.duration_s,
        request_throughput_rps=reported.request_throughput_rps,
        output_token_throughput_tps=reported.output_token_throughput_tps,
        total_token_throughput_tps=None,
        goodput_rps=None,
        goodput_slo={},
    )


@dataclass(frozen=True)
class RunTarget:
    """Where a parsed run is filed: its model variant, hardware and deployment."""

    variant: ModelVariant
    hardware: HardwareProfile | None
    deployment: Deployment | None


@transaction.atomic
def run_store(
    *,
    team: Team,
    parsed: ParsedRun,
    target: RunTarget,
    user: AbstractBaseUser | None = None,
    filename: str = "",
    slo: dict[str, float | None] | None = None,
) -> PerformanceRun:
    """Store one parsed run with its samples and summary, all or nothing."""
    slo = slo or {}
    run = PerformanceRun.objects.create(
        team=team,
        variant=target.variant,
        hardware=target.hardware,
        deployment=target.deployment,
        name=parsed.name[:200],
        concurrency=parsed.concurrency,
        request_rate_rps=parsed.request_rate_rps,
        input_tokens_target=parsed.input_tokens_target,
        output_tokens_target=parsed.output_tokens_target,
        dataset=parsed.dataset[:200],
        tool=parsed.tool[:50],
        tool_version=parsed.tool_version[:50],
        source_format=parsed.source_format,
        source_filename=filename[:255],
        provider=parsed.provider[:100],
        started_at=parsed.started_at,
        duration_s=parsed.duration_s,
        tags=parsed.tags,
        notes=parsed.notes,
        slo_ttft_ms=slo.get("ttft_ms"),
        slo_tpot_ms=slo.get("tpot_ms"),
        slo_e2e_ms=slo.get("e2e_ms"),
        created_by=user if user is not None and user.is_authenticated else None,
    )
    if parsed.samples:
        samples_store(run=run, samples=parsed.samples)
    if parsed.samples and not (parsed.samples_are_subset and parsed.reported is not None):
        _save_summary(run, _columns_from_parsed(parsed.samples))
    elif parsed.reported is not None:
        _reported_summary(run, parsed)
    return run


def run_update_slo(
    *, run: PerformanceRun, ttft_ms: float | None, tpot_ms: float | None, e2e_ms: float | None
) -> RunSummary | None:
    """Set the goodput SLO of a run and recompute its summary."""
    run.slo_ttft_ms, run.slo_tpot_ms, run.slo_e2e_ms = ttft_ms, tpot_ms, e2e_ms
    run.save(update_fields=["slo_ttft_ms", "slo_tpot_ms", "slo_e2e_ms"])
    return run_summary_compute(run=run)
