"""Read models shared by the pages and the API: the leaderboard and the quantization view.

Both read the team's scores in one query into a variants × benchmarks matrix (numpy, NaN where a
variant has no score) and compute averages, coverage and differences column-wise on it: a Python
loop per score was most of the time of both endpoints. Simulated scores (generated demo data) are
left out unless `include_simulated` is set; rows that include one say which benchmarks.

A variant may have two scores per benchmark: one imported (measured elsewhere, uploaded) and one
measured here by a benchmark run. The matrix holds the measured one where both exist (the same query
reads the origin as a number; measured rows are written after imported ones), with its interval, item
count and run. Where a quantized variant and its base both have measured scores of the same suite, the
quantization view compares them item by item (apps.scores.paired), reading the per-item outcomes only
for those pairs and only once per pair of score versions (cached).
"""

from dataclasses import dataclass, field
from itertools import chain
from typing import TypedDict

import numpy as np
from django.db import connections
from django.db.models import Case, F, FloatField, IntegerField, Value, When
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce
from django.urls import NoReverseMatch, get_script_prefix, get_urlconf, reverse

from apps.accounts.models import Team
from apps.scores.models import FULL_PRECISION, Benchmark, ModelVariant, Score
from apps.scores.paired import measured_pairs

FETCH_CHUNK = 2000  # rows per fetch when reading scores into numpy

# How the leaderboard ranks by average when variants do not all have every benchmark (page and API docs).
RANKING_RULE = (
    "The average is over the higher-is-better benchmarks shown; variants with a score on every one of them "
    "are ranked first, by their average, and variants missing some follow, those with more of the benchmarks "
    "first, each group by its average over the benchmarks it has. A score measured here replaces the "
    "imported one of the same benchmark."
)


_PLACEHOLDER = 987654321
_patterns: dict[tuple, str | None] = {}


def _url_pattern(name: str, *args: int) -> str | None:
    """reverse(name, args + [placeholder]) with "{}" for the placeholder, once per URLconf and script prefix (a
    reverse per run or item was a third of the quantization view); None while the URL is not mounted."""
    key = (name, args, get_urlconf(), get_script_prefix())
    if key not in _patterns:
        try:
            _patterns[key] = reverse(name, args=[*args, _PLACEHOLDER]).replace(str(_PLACEHOLDER), "{}")
        except NoReverseMatch:  # the benchmarks pages are not mounted (yet)
            _patterns[key] = None
    return _patterns[key]


def run_url(run_id: int | None) -> str | None:
    """The page of a benchmark run (apps.benchmarks, named by URL only: a lower app does not import it)."""
    pattern = _url_pattern("benchmarks:run-detail") if run_id is not None else None
    return pattern.format(run_id) if pattern else None


def item_url_pattern(suite_id: int | None) -> str | None:
    """The URL of a suite's item with "{index}" in place of the index."""
    pattern = _url_pattern("benchmarks:item", suite_id) if suite_id is not None else None
    return pattern.replace("{}", "{index}") if pattern else None


@dataclass
class ScoreMatrix:
    """Scores of `variant_ids` (rows) × `benchmark_ids` (columns); NaN / False where there is none.
    Where a cell has a measured score it is the one held, `measured` is True and the measured-only
    columns (interval, items, run, score id) are set; NaN elsewhere."""

    variant_ids: list[int]
    benchmark_ids: list[int]
    values: np.ndarray  # float, percent
    simulated: np.ndarray  # bool
    measured: np.ndarray  # bool
    ci_low: np.ndarray  # float, percent
    ci_high: np.ndarray
    n_items: np.ndarray  # float (NaN: unknown)
    run_ids: np.ndarray  # float (NaN: none)
    score_ids: np.ndarray  # float: the measured score's id (NaN: none)

    @property
    def present(self) -> np.ndarray:
        return ~np.isnan(self.values)


# The origin comes as a number (1.0 = measured) in the matrix's query; the figures only measured scores have
# (NULLs as -1: none is negative) in a second query of the measured rows alone, made only when there are some:
# six more columns on every imported row tripled the leaderboard's read.
_MEASURED_FLAG = Case(When(origin=Score.Origin.MEASURED, then=Value(1)), default=Value(0), output_field=IntegerField())
_MINUS_ONE = Value(-1.0, output_field=FloatField())
_MEASURED_COLUMNS = {
    "ci_low": Coalesce(F("ci_low_pct"), _MINUS_ONE),
    "ci_high": Coalesce(F("ci_high_pct"), _MINUS_ONE),
    "items": Coalesce(Cast("n_items", FloatField()), _MINUS_ONE),
    "run": Coalesce(Cast(KT("provenance__run_id"), FloatField()), _MINUS_ONE),
}


def score_matrix(
    *,
    team: Team,
    variant_ids: list[int],
    benchmark_ids: list[int],
    include_simulated: bool,
    all_variants: bool = False,
    all_benchmarks: bool = False,
) -> ScoreMatrix:
    """The team's scores of these variants on these benchmarks, as a matrix, in one query (which
    also says which are measured here, and which are simulated when those are included); a measured
    score replaces the imported one of its cell. `all_variants` / `all_benchmarks` say the lists are
    every one of the team's, so the query need not list them."""
    shape = (len(variant_ids), len(benchmark_ids))
    nan = np.full(shape, np.nan)
    values, simulated, measured = nan.copy(), np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
    matrix = ScoreMatrix(variant_ids, benchmark_ids, values, simulated, measured, nan.copy(), nan.copy(),
                         nan.copy(), nan.copy(), nan.copy())  # fmt: skip
    if not variant_ids or not benchmark_ids:
        return matrix
    # No ORDER BY: the model's default ordering joins both related tables only to sort the rows.
    scores = Score.objects.filter(team=team).order_by()
    if not all_variants:
        scores = scores.filter(variant_id__in=variant_ids)
    if not all_benchmarks:
        scores = scores.filter(benchmark_id__in=benchmark_ids)
    if not include_simulated:
        scores = scores.filter(is_simulated=False)
    columns = ["variant_id", "benchmark_id", "value_pct", "is_measured"]
    if include_simulated:
        # The flag comes as one more number (1.0 = simulated): a second query for it cost as much as the first.
        columns.append("is_simulated")
    rows_read = _fetch_numbers(scores.annotate(is_measured=_MEASURED_FLAG).values_list(*columns))
    if not len(rows_read):
        return matrix
    rows, cols, known = _cells(matrix, rows_read[:, 0], rows_read[:, 1])
    is_measured = rows_read[:, 3] != 0
    # Imported first, measured over them: where a cell has both, the measured one stays.
    for part in (known & ~is_measured, known & is_measured):
        r, c = rows[part], cols[part]
        values[r, c] = rows_read[part, 2]
        if include_simulated:
            simulated[r, c] = rows_read[part, 4] != 0
    measured_known = known & is_measured
    measured[rows[measured_known], cols[measured_known]] = True
    if measured_known.any():
        details = _fetch_numbers(
            scores.filter(origin=Score.Origin.MEASURED)
            .annotate(**_MEASURED_COLUMNS)
            .values_list("variant_id", "benchmark_id", "id", *_MEASURED_COLUMNS)
        )
        r, c, found = _cells(matrix, details[:, 0], details[:, 1])
        r, c, details = r[found], c[found], details[found]
        for target, column in ((matrix.score_ids, 2), (matrix.ci_low, 3), (matrix.ci_high, 4), (matrix.n_items, 5),
                               (matrix.run_ids, 6)):  # fmt: skip
            figures = details[:, column]
            target[r, c] = np.where(figures < 0, np.nan, figures)
    return matrix


def _fetch_numbers(queryset) -> np.ndarray:
    """The rows of a values_list queryset of numbers as a float array (one row per row).

    Read off the cursor straight into numpy: the ORM's per-row work (and the converter a boolean
    column needs on SQLite) was half the leaderboard's time, and a list of 10,000 row tuples kept
    alive until the end made the garbage collector run full collections every few requests."""
    query = queryset.query
    width = len(query.selected) if query.selected else len(query.values_select) + len(query.annotation_select)
    sql, params = queryset.query.sql_with_params()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(sql, params)
        chunks = iter(lambda: cursor.fetchmany(FETCH_CHUNK), [])  # not row by row through Django's wrapper
        flat = np.fromiter(chain.from_iterable(chain.from_iterable(chunks)), dtype=np.float64)
    return flat.reshape(-1, width)


def _cells(matrix: ScoreMatrix, variant_ids: np.ndarray, benchmark_ids: np.ndarray):
    """Row and column of each (variant, benchmark), and which of them are in the matrix at all (a
    variant created since its list was read is not)."""
    rows, row_known = _positions(matrix.variant_ids, variant_ids)
    cols, col_known = _positions(matrix.benchmark_ids, benchmark_ids)
    return rows, cols, row_known & col_known


def _positions(order: list[int], ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of `ids` stands in `order`, and whether it is there at all."""
    order_array = np.asarray(order, dtype=np.int64)
    ids = np.asarray(ids, dtype=np.int64)
    sorter = np.argsort(order_array)
    found = np.searchsorted(order_array, ids, sorter=sorter).clip(max=len(order_array) - 1)
    positions = sorter[found]
    return positions, order_array[positions] == ids


def _row_means(values: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: how many values are present, and their mean (NaN where none is)."""
    counts = present.sum(axis=1)
    sums = np.where(present, values, 0.0).sum(axis=1)
    means = np.divide(sums, counts, out=np.full(len(counts), np.nan), where=counts > 0)
    return counts, means


def _none_for_nan(values: np.ndarray, present: np.ndarray) -> list[list]:
    """The matrix as nested lists of Python floats, with None where a value is missing."""
    cells = values.astype(object)
    cells[~present] = None
    return cells.tolist()


@dataclass
class LeaderboardRow:
    variant_id: int
    model_name: str
    quantization: str
    family: str
    parameters_b: float | None
    scores: dict[str, float | None]  # benchmark name → percent, None where the variant has none
    average_pct: float | None  # mean over the higher-is-better benchmarks shown that the variant has
    coverage_count: int  # how many of the higher-is-better benchmarks shown the variant has a score on
    coverage_total: int  # how many higher-is-better benchmarks are shown (the same on every row)
    complete: bool  # a score on every higher-is-better benchmark shown
    benchmark_count: int  # benchmarks shown with a score, lower-is-better ones included
    simulated: bool  # includes at least one simulated score
    simulated_benchmarks: list[str]  # which of `scores` are simulated
    origins: dict[str, str | None]  # benchmark name → "measured" / "imported", None where no score
    measured: dict[str, "MeasuredCell"]  # the measured scores of `scores`: interval, items, run

    def as_dict(self) -> dict:
        return dict(self.__dict__)  # flat: a shallow copy is the JSON shape (asdict deep-copies, slowly)


class MeasuredCell(TypedDict):
    ci_low_pct: float | None  # Wilson 95% interval of the accuracy
    ci_high_pct: float | None
    n_items: int | None
    run_id: int | None
    run_url: str | None


def _measured_cells(matrix: ScoreMatrix, names: list[str]) -> dict[int, dict[str, MeasuredCell]]:
    """The measured cells by matrix row and benchmark name, read out of the matrix in bulk (a numpy read per
    cell cost more than the rest of the board)."""
    rows, cols = np.nonzero(matrix.measured)
    if not len(rows):
        return {}
    run_pattern = _url_pattern("benchmarks:run-detail")
    figures = [np.where(np.isnan(a), -1.0, a)[rows, cols].tolist()
               for a in (matrix.ci_low, matrix.ci_high, matrix.n_items, matrix.run_ids)]  # fmt: skip
    cells: dict[int, dict[str, MeasuredCell]] = {}
    for i, j, low, high, items, run in zip(rows.tolist(), cols.tolist(), *figures, strict=True):
        run_id = int(run) if run >= 0 else None
        cells.setdefault(i, {})[names[j]] = {
            "ci_low_pct": low if low >= 0 else None,
            "ci_high_pct": high if high >= 0 else None,
            "n_items": int(items) if items >= 0 else None,
            "run_id": run_id,
            "run_url": run_pattern.format(run_id) if run_pattern and run_id is not None else None,
        }
    return cells


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
    include_simulated: bool = False,
    team_benchmarks: list[Benchmark] | None = None,
) -> Leaderboard:
    """Every variant with scores, one column per benchmark, sorted; missing values sort last and,
    by average, variants missing some benchmarks rank after complete ones (RANKING_RULE).
    `team_benchmarks`: every benchmark of the team by name, when the caller has read them already."""
    if team_benchmarks is None:
        team_benchmarks = list(Benchmark.objects.filter(team=team).order_by("name"))
    benchmarks = team_benchmarks
    if benchmark_names:
        wanted = {n.lower() for n in benchmark_names}
        benchmarks = [b for b in benchmarks if b.name.lower() in wanted]
    variants = list(
        _variant_queryset(team, family, quantization)
        .order_by()
        .values_list("id", "model_name", "quantization", "family", "parameters_b")
    )
    matrix = score_matrix(
        team=team,
        variant_ids=[v[0] for v in variants],
        benchmark_ids=[b.pk for b in benchmarks],
        include_simulated=include_simulated,
        all_variants=not (family or quantization),
        all_benchmarks=not benchmark_names,
    )
    names = [b.name for b in benchmarks]
    present = matrix.present
    averaged = np.array([b.higher_is_better for b in benchmarks], dtype=bool)
    coverage, averages = _row_means(matrix.values[:, averaged], present[:, averaged])
    total = int(averaged.sum())
    # Everything per row as plain Python values up front: numpy calls inside the loop cost more
    # than the arithmetic.
    cells = _none_for_nan(matrix.values, present)
    counts = present.sum(axis=1).tolist()
    coverage_list, averages_list = coverage.tolist(), averages.tolist()
    simulated_rows = matrix.simulated.any(axis=1).tolist()
    measured_cells = _measured_cells(matrix, names)
    origin_cells = np.where(matrix.measured, "measured", np.where(present, "imported", None)).tolist()

    rows = []
    for i, (variant_id, model_name, quant, family_name, parameters_b) in enumerate(variants):
        if not counts[i]:
            continue
        covered = coverage_list[i]
        rows.append(
            LeaderboardRow(
                variant_id=variant_id,
                model_name=model_name,
                quantization=quant,
                family=family_name,
                parameters_b=parameters_b,
                scores=dict(zip(names, cells[i], strict=True)),
                average_pct=averages_list[i] if covered else None,
                coverage_count=covered,
                coverage_total=total,
                complete=covered == total,
                benchmark_count=counts[i],
                simulated=simulated_rows[i],
                simulated_benchmarks=[names[j] for j in np.flatnonzero(matrix.simulated[i])]
                if simulated_rows[i]
                else [],
                origins=dict(zip(names, origin_cells[i], strict=True)),
                measured=measured_cells.get(i, {}),
            )
        )
    rows.sort(key=lambda r: (r.model_name.lower(), r.quantization))
    if sort == "average":
        present_rows = [r for r in rows if r.average_pct is not None]
        missing = [r for r in rows if r.average_pct is None]
        present_rows.sort(key=lambda r: r.average_pct, reverse=descending)  # stable: ties stay in name order
        present_rows.sort(key=lambda r: r.coverage_count, reverse=True)  # more coverage first, in either order
        rows = present_rows + missing
    elif sort != "model":
        present_rows = [r for r in rows if r.scores.get(sort) is not None]
        missing = [r for r in rows if r.scores.get(sort) is None]
        present_rows.sort(key=lambda r: r.scores[sort], reverse=descending)
        rows = present_rows + missing
    elif descending:
        rows.reverse()
    return Leaderboard(benchmarks=benchmarks, rows=rows)


class PairedDelta(TypedDict):
    """Both variants measured on the same suite (same items): the comparison item by item."""

    n_items: int
    points_lost: float  # base − quantized accuracy over the same items, in points
    ci_low_pts: float  # Newcombe's paired 95% interval of points_lost
    ci_high_pts: float
    mcnemar_p: float  # exact McNemar test of the flipped items
    flipped_count: int
    base_only: int  # right with the base, wrong quantized
    quantized_only: int
    agreement: float | None  # share of items with the same extracted answer
    flipped: list[int]  # item indices (test split) whose correctness differs
    item_url: str | None  # an item's page, "{index}" to fill in
    suite: str
    settings_differ: bool  # the two runs' shots / temperature / max tokens differ
    settings_note: str  # what differs, in words ("" when nothing does)
    base_run_url: str | None
    quantized_run_url: str | None


class QuantizationDelta(TypedDict):
    base_pct: float
    quantized_pct: float
    points_lost: float  # positive = the quantized variant is worse; rounded to 6 decimals (float noise)
    base_origin: str  # "measured" (here) or "imported"
    quantized_origin: str
    paired: PairedDelta | None  # both measured on the same suite; None: the unpaired difference only


@dataclass
class QuantizationRow:
    variant_id: int
    model_name: str
    quantization: str
    base_variant_id: int
    base_quantization: str
    deltas: dict[str, QuantizationDelta]  # only benchmarks both variants have, in benchmark name order
    mean_points_lost: float | None
    benchmark_count: int
    simulated: bool  # a delta uses a simulated score (of the variant or of its base)
    simulated_benchmarks: list[str]  # which deltas do
    paired_count: int = 0  # deltas compared item by item

    def as_dict(self) -> dict:
        return dict(self.__dict__)  # the deltas are plain dicts already: the JSON shape


@dataclass
class QuantizationReport:
    benchmarks: list[Benchmark]
    rows: list[QuantizationRow]
    without_base: list[str] = field(default_factory=list)  # "model · quantization" with no FP base


def quantization_report(
    *,
    team: Team,
    family: str | None = None,
    model_name: str | None = None,
    include_simulated: bool = False,
) -> QuantizationReport:
    """Each quantized variant with scores against its model's full-precision base (BF16, else FP16,
    else FP32; one with scores first): points lost per benchmark both have."""
    benchmarks = list(Benchmark.objects.filter(team=team).order_by("name"))
    variants = _variant_queryset(team, family, None)
    if model_name:
        variants = variants.filter(model_name=model_name)
    variants = list(variants.order_by().values_list("id", "model_name", "quantization"))
    matrix = score_matrix(
        team=team,
        variant_ids=[v[0] for v in variants],
        benchmark_ids=[b.pk for b in benchmarks],
        include_simulated=include_simulated,
        all_variants=not (family or model_name),
        all_benchmarks=True,
    )
    has_scores = matrix.present.any(axis=1).tolist()

    by_model: dict[str, list[int]] = {}
    for i, (_, name, _) in enumerate(variants):
        by_model.setdefault(name, []).append(i)
    pairs: list[tuple[int, int]] = []  # (quantized row, base row) of the matrix
    without_base = []
    for name in sorted(by_model, key=str.lower):
        indices = by_model[name]
        full = {variants[i][2]: i for i in indices if variants[i][2] in FULL_PRECISION}
        ranked = [full[q] for q in FULL_PRECISION if q in full]
        base = next((i for i in ranked if has_scores[i]), ranked[0] if ranked else None)
        for i in sorted(indices, key=lambda i: variants[i][2]):
            if variants[i][2] in FULL_PRECISION or not has_scores[i]:
                continue
            if base is None:
                without_base.append(f"{name} · {variants[i][2]}")
            else:
                pairs.append((i, base))
    if not pairs:
        return QuantizationReport(benchmarks=[], rows=[], without_base=without_base)

    quantized_rows, base_rows = (np.array(p, dtype=np.int64) for p in zip(*pairs, strict=True))
    direction = np.array([1.0 if b.higher_is_better else -1.0 for b in benchmarks])
    quantized, base_values = matrix.values[quantized_rows], matrix.values[base_rows]
    lost = np.round((base_values - quantized) * direction, 6)
    both = ~np.isnan(lost)
    counts, means = _row_means(lost, both)
    uses_simulated = (matrix.simulated[quantized_rows] | matrix.simulated[base_rows]) & both
    simulated_rows = uses_simulated.any(axis=1).tolist()
    names = [b.name for b in benchmarks]
    # The deltas that exist, flat and row after row (np.nonzero's order): one list each, sliced per
    # row by `bounds`, instead of a list per row and column (fewer objects, fewer collections).
    _, delta_columns = np.nonzero(both)
    delta_names = [names[j] for j in delta_columns.tolist()]
    delta_base, delta_quantized, delta_lost = base_values[both].tolist(), quantized[both].tolist(), lost[both].tolist()
    bounds = np.concatenate(([0], np.cumsum(counts))).tolist()
    counts_list, means_list = counts.tolist(), np.round(means, 6).tolist()
    measured_q, measured_b = matrix.measured[quantized_rows], matrix.measured[base_rows]
    delta_q_origin = np.where(measured_q[both], "measured", "imported").tolist()
    delta_b_origin = np.where(measured_b[both], "measured", "imported").tolist()
    # Pairs compared item by item: both measured, on a higher-is-better benchmark (an accuracy).
    # (A score id is missing only when the score was deleted between the matrix's two queries.)
    ids_known = ~np.isnan(matrix.score_ids[quantized_rows]) & ~np.isnan(matrix.score_ids[base_rows])
    pairable = both & measured_q & measured_b & (direction > 0) & ids_known
    paired = _paired_deltas(matrix, base_rows, quantized_rows, pairable)
    delta_paired: list[PairedDelta | None] = [None] * len(delta_lost)
    delta_index = np.full(both.shape, -1, dtype=np.int64)
    delta_index[both] = np.arange(len(delta_lost))
    for k, result in zip(delta_index[pairable].tolist(), paired, strict=True):
        delta_paired[k] = result

    rows = []
    for r, (i, base) in enumerate(pairs):
        sim_columns = np.flatnonzero(uses_simulated[r]).tolist() if simulated_rows[r] else []
        rows.append(
            QuantizationRow(
                variant_id=variants[i][0],
                model_name=variants[i][1],
                quantization=variants[i][2],
                base_variant_id=variants[base][0],
                base_quantization=variants[base][2],
                deltas={
                    delta_names[k]: {
                        "base_pct": delta_base[k],
                        "quantized_pct": delta_quantized[k],
                        "points_lost": delta_lost[k],
                        "base_origin": delta_b_origin[k],
                        "quantized_origin": delta_q_origin[k],
                        "paired": delta_paired[k],
                    }
                    for k in range(bounds[r], bounds[r + 1])
                },
                paired_count=sum(delta_paired[k] is not None for k in range(bounds[r], bounds[r + 1])),
                mean_points_lost=means_list[r] if counts_list[r] else None,
                benchmark_count=counts_list[r],
                simulated=simulated_rows[r],
                simulated_benchmarks=[names[j] for j in sim_columns],
            )
        )
    used = both.any(axis=0)
    return QuantizationReport(
        benchmarks=[b for b, shown in zip(benchmarks, used, strict=True) if shown],
        rows=rows,
        without_base=without_base,
    )


def _paired_deltas(matrix: ScoreMatrix, base_rows: np.ndarray, quantized_rows: np.ndarray,
                   pairable: np.ndarray) -> list[PairedDelta | None]:  # fmt: skip
    """Per pairable (quantized, base) cell, row after row: the item-by-item comparison, or None where the two
    scores are not of the same suite. Keyed by what the matrix read already (score ids, runs, values, item
    counts), so a page whose comparisons are cached reads nothing more."""

    def cells(rows, array):
        return array[rows][pairable].tolist()

    base_ids, quantized_ids = cells(base_rows, matrix.score_ids), cells(quantized_rows, matrix.score_ids)
    versions = zip(cells(base_rows, matrix.run_ids), cells(base_rows, matrix.values), cells(base_rows, matrix.n_items),
                   cells(quantized_rows, matrix.run_ids), cells(quantized_rows, matrix.values),
                   cells(quantized_rows, matrix.n_items), strict=True)  # fmt: skip
    compared = measured_pairs([(int(b), int(q), repr(v)) for b, q, v in zip(base_ids, quantized_ids, versions,
                                                                             strict=True)])  # fmt: skip
    run_pattern, item_patterns = _url_pattern("benchmarks:run-detail"), {}  # one URL lookup per call, not per pair
    results: list[PairedDelta | None] = []
    for pair in compared:
        if pair is None:
            results.append(None)
            continue
        figures, suite = pair["figures"], pair["suite"]
        if suite.get("id") not in item_patterns:
            item_patterns[suite.get("id")] = item_url_pattern(suite.get("id"))
        base_run, quantized_run = pair["base_run_id"], pair["quantized_run_id"]
        flipped = np.frombuffer(figures["flipped"], dtype="<u4").tolist()
        results.append(
            {
                "n_items": figures["n"],
                "points_lost": -figures["difference_pts"],
                "ci_low_pts": -figures["ci_high_pts"],
                "ci_high_pts": -figures["ci_low_pts"],
                "mcnemar_p": figures["mcnemar_p"],
                "flipped_count": len(flipped),
                "base_only": figures["a_only"],
                "quantized_only": figures["b_only"],
                "agreement": figures["agreement"],
                "flipped": flipped,
                "item_url": item_patterns[suite.get("id")],
                "suite": " v".join(str(p) for p in (suite.get("name"), suite.get("version")) if p is not None),
                "settings_differ": bool(pair["settings_note"]),
                "settings_note": pair["settings_note"],
                "base_run_url": run_pattern.format(base_run) if run_pattern and base_run is not None else None,
                "quantized_run_url": run_pattern.format(quantized_run)
                if run_pattern and quantized_run is not None
                else None,
            }
        )
    return results
