"""Storing performance runs: samples through a binary COPY (PostgreSQL) or executemany (SQLite),
and their summary computed once with numpy."""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from operator import attrgetter

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from psycopg.types.string import BytesBinaryDumper

from apps.accounts.models import Team
from apps.hardware.models import (
    Deployment,
    HardwareProfile,
    PerformanceRun,
    RequestSample,
    RunSummary,
    ServerMetrics,
)
from apps.hardware.parsed import ParsedRun, ParsedSample
from apps.hardware.server_metrics import server_metrics_row
from apps.hardware.stats import (
    WORKLOAD_FIELDS,
    SampleColumns,
    SummaryFigures,
    WorkloadColumns,
    length_report,
    summarize,
)
from apps.scores.models import ModelVariant

_SENTINEL = object()
SAMPLE_COLUMNS = (
    "run_id", "index", "error_code", "error_message", "ttft_ms", "e2e_ms", "input_tokens", "output_tokens",
    "mean_itl_ms", "itl_ms", "start_offset_ms", *WORKLOAD_FIELDS,
)  # fmt: skip
_WORKLOAD_VALUES = attrgetter(*WORKLOAD_FIELDS)
_NO_WORKLOAD_VALUES = (None,) * len(WORKLOAD_FIELDS)


def _itl_array(gaps) -> np.ndarray | None:
    return None if gaps is None else np.asarray(gaps, dtype="<f8")


def _itl_bytes(gaps: list[float] | None) -> bytes | None:
    return None if gaps is None else np.asarray(gaps, dtype="<f8").tobytes()


def itl_from_bytes(raw) -> np.ndarray | None:
    """Inter-token gaps as stored (float64 little-endian) back to an array."""
    return None if raw is None else np.frombuffer(bytes(raw), dtype="<f8")


def _sample_row(run_id: int, s: ParsedSample, gaps: np.ndarray | None = _SENTINEL) -> tuple:
    """One row of SAMPLE_COLUMNS; `gaps` is the sample's ITL array when the caller already made it."""
    itl = _itl_bytes(s.itl_ms) if gaps is _SENTINEL else (None if gaps is None else gaps.tobytes())
    # Spelled out: unpacking attrgetter tuples into the row took twice as long at 100,000 samples.
    return (
        run_id, s.index, s.error_code, s.error_message, s.ttft_ms, s.e2e_ms, s.input_tokens, s.output_tokens,
        s.mean_itl_ms, itl, s.start_offset_ms, s.session_index, s.turn_index, s.requested_input_tokens,
        s.requested_output_tokens, s.cached_tokens, s.reasoning_tokens, s.ttfot_ms, s.phase,
    )  # fmt: skip


_COPY_TYPES: dict[str, list[int]] = {}


def _copy_types(cursor, table: str) -> list[int]:
    """The PostgreSQL type OIDs of SAMPLE_COLUMNS, which a binary COPY needs (read once per process)."""
    if table not in _COPY_TYPES:
        cursor.execute(
            "SELECT attname, atttypid FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
            "AND NOT attisdropped",
            [table],
        )
        oids = dict(cursor.fetchall())
        _COPY_TYPES[table] = [int(oids[column]) for column in SAMPLE_COLUMNS]
    return _COPY_TYPES[table]


def samples_copy_sql() -> str:
    """The COPY statement of samples_store on PostgreSQL (binary: no text escaping of the ITL bytes)."""
    columns = ", ".join(f'"{c}"' for c in SAMPLE_COLUMNS)
    return f"COPY {RequestSample._meta.db_table} ({columns}) FROM STDIN (FORMAT BINARY)"


def samples_store(*, run: PerformanceRun, samples: list[ParsedSample], gaps: list | None = None) -> int:
    """Write a run's samples in bulk: a binary COPY on PostgreSQL, one executemany on SQLite.

    `gaps` (each sample's ITL as a float64 array, or None) saves converting them twice when the
    caller has them already. Binary COPY sends the ITL bytes as they are: the text format would
    hex-escape them, four times the work for a run with every gap."""
    table = RequestSample._meta.db_table
    gaps = gaps if gaps is not None else [_itl_array(s.itl_ms) for s in samples]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            types = _copy_types(cursor, table)
            # bytea through psycopg's own (C) bytes dumper, not the DB-API Binary wrapper Django's
            # adapters pick for the type: a fifth of the client's time at 100,000 samples.
            cursor.cursor.adapters.register_dumper(bytes, BytesBinaryDumper)
            with cursor.cursor.copy(samples_copy_sql()) as copy:
                copy.set_types(types)
                for sample, sample_gaps in zip(samples, gaps, strict=True):
                    copy.write_row(_sample_row(run.pk, sample, sample_gaps))
        else:
            columns = ", ".join(f'"{c}"' for c in SAMPLE_COLUMNS)
            placeholders = ", ".join(["%s"] * len(SAMPLE_COLUMNS))
            cursor.executemany(
                f"INSERT INTO {table} ({columns}) VALUES ({placeholders})",
                [_sample_row(run.pk, s, g) for s, g in zip(samples, gaps, strict=True)],
            )
    return len(samples)


def _columns_from_parsed(samples: list[ParsedSample], gaps: list | None = None) -> SampleColumns:
    # One list and one C-level conversion per column (None becomes NaN): a generator per value is
    # several times slower at 100,000 samples.
    def column(attribute: str) -> np.ndarray:
        return np.array([getattr(s, attribute) for s in samples], dtype=float)

    error_codes = [s.error_code for s in samples]
    return SampleColumns(
        ok=np.array([not code for code in error_codes], dtype=bool),
        error_codes=error_codes,
        ttft_ms=column("ttft_ms"),
        e2e_ms=column("e2e_ms"),
        input_tokens=column("input_tokens"),
        output_tokens=column("output_tokens"),
        mean_itl_ms=column("mean_itl_ms"),
        itl_gaps_ms=gaps if gaps is not None else [_itl_array(s.itl_ms) for s in samples],
        start_offset_ms=column("start_offset_ms"),
        workload=_workload_columns(samples),
    )


def _workload_columns(samples: list[ParsedSample]) -> WorkloadColumns | None:
    """The workload columns, or None when no sample has any (an imported run: one cheap pass, no arrays)."""
    if all(values == _NO_WORKLOAD_VALUES for values in map(_WORKLOAD_VALUES, samples)):
        return None
    return WorkloadColumns(*(np.array([getattr(s, name) for s in samples], dtype=float) for name in WORKLOAD_FIELDS))


def run_columns(run: PerformanceRun) -> SampleColumns:
    """A stored run's samples as numpy columns, in request order."""
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
            *WORKLOAD_FIELDS,
        )
    )
    return SampleColumns.from_rows([(*r[:6], itl_from_bytes(r[6]), *r[7:]) for r in rows])


def _slo(run: PerformanceRun) -> dict:
    return {"ttft_ms": run.slo_ttft_ms, "tpot_ms": run.slo_tpot_ms, "e2e_ms": run.slo_e2e_ms}


def _save_summary(run: PerformanceRun, columns: SampleColumns, figures: SummaryFigures | None = None) -> RunSummary:
    """Store the run's summary: `figures` when already computed, else computed from `columns`."""
    if figures is None:
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
    run.summary = summary  # callers holding `run` (the API's PATCH answer) see the new figures
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
    return _save_summary(run, run_columns(run))


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
    gaps = [_itl_array(s.itl_ms) for s in parsed.samples]  # once, for the rows and the summary
    columns = _columns_from_parsed(parsed.samples, gaps) if parsed.samples else None
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
        is_simulated=parsed.is_simulated,
        workload_version_id=parsed.workload_version_id,
        token_calibration=parsed.token_calibration,
        length_report=length_report(columns) if columns is not None else None,
        slo_ttft_ms=slo.get("ttft_ms"),
        slo_tpot_ms=slo.get("tpot_ms"),
        slo_e2e_ms=slo.get("e2e_ms"),
        created_by=user if user is not None and user.is_authenticated else None,
    )
    summarized = bool(parsed.samples) and not (parsed.samples_are_subset and parsed.reported is not None)
    if parsed.samples:
        # numpy computes the summary on a second thread while the database takes the rows: it
        # needs nothing from the database, and the COPY mostly waits on the server.
        with ThreadPoolExecutor(max_workers=1) as pool:
            figures = pool.submit(summarize, columns, duration_s=run.duration_s, slo=_slo(run)) if summarized else None
            samples_store(run=run, samples=parsed.samples, gaps=gaps)
            if figures is not None:
                _save_summary(run, columns, figures.result())
    if not summarized and parsed.reported is not None:
        _reported_summary(run, parsed)
    if parsed.server_metrics is not None:  # scraped during a live step (issue 14)
        ServerMetrics.objects.create(
            run=run, **server_metrics_row(parsed.server_metrics, columns=columns, duration_s=run.duration_s)
        )
    return run


def run_update_slo(
    *, run: PerformanceRun, ttft_ms: float | None, tpot_ms: float | None, e2e_ms: float | None
) -> RunSummary | None:
    """Set the goodput SLO of a run and recompute its summary."""
    run.slo_ttft_ms, run.slo_tpot_ms, run.slo_e2e_ms = ttft_ms, tpot_ms, e2e_ms
    run.save(update_fields=["slo_ttft_ms", "slo_tpot_ms", "slo_e2e_ms"])
    return run_summary_compute(run=run)
