"""Analytics across every experiment, parameter sweep and performance run of a team.

Quality figures are on the 0–100 scale of the batch analysis: text-quality metrics as stored, the
evaluator score × 100 and pass/fail as 100/0. Failed requests are counted, never averaged in. The
database aggregates (counts, sums, sums of squares, value counts); numpy/scipy do the rest
(apps.analytics.stats), so a view over 200,000 responses reads a few hundred rows.

Simulated results (the sim provider, generated demo data) are left out unless the filter includes them;
every group, row and pair that aggregates data says `simulated: True` when a simulated result is in it.
"""

import math
from collections import defaultdict
from dataclasses import asdict

import numpy as np
from django.db import connection
from django.db.models import BooleanField, Count, Exists, ExpressionWrapper, F, Max, Min, OuterRef, Q, Sum
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce, Floor, TruncDay, TruncWeek

from apps.analytics import stats
from apps.analytics.filters import Filters, responses
from apps.batches import analysis
from apps.batches.selectors import QUALITY_METRICS, TEXT_METRICS, as_json, metric_expression
from apps.experiments.models import Experiment, ExperimentTarget, TestCase
from apps.hardware.models import PerformanceRun
from apps.providers.models import ProviderEndpoint
from apps.scores.models import Benchmark, ModelVariant
from apps.scores.selectors import score_matrix

OK = Q(error_code="")
DIMENSIONS = {"model": "target__model", "test_case": "test_case_id", "tag": "test_case_id",
              "evaluator": "test_case__evaluator"}  # fmt: skip
PARAMETER_NAMES = ("temperature", "top_p", "max_tokens", "frequency_penalty", "presence_penalty")
PARAMETER_SAMPLE = 10_000  # rows the parameter analytics read at most (a deterministic sample)
MAX_COMPARED = 12  # models compared pairwise at most (the largest by responses)


# Whether a request succeeded, as a grouping key: the views group by it rather than filter each of their
# twenty-odd aggregates on it (PostgreSQL evaluates a FILTER once per aggregate and row: a third of the time).
SUCCEEDED = ExpressionWrapper(OK, output_field=BooleanField())
ALL_ROWS = ("responses", "simulated_n", "cost")  # figures of failed and successful requests alike


def _moments(prefix: str, expression, *, ok_filter: bool = True) -> dict:
    """Aggregates whose results `_summary` turns into n, mean, sd and interval (over successful requests:
    filtered here, or grouped by `SUCCEEDED` with ok_filter=False)."""
    where = OK if ok_filter else None
    return {
        f"{prefix}_n": Count(expression, filter=where),
        f"{prefix}_sum": Sum(expression, filter=where),
        f"{prefix}_sq": Sum(expression * expression, filter=where),
    }


def _by_key(rows, keys: tuple[str, ...]) -> dict:
    """Rows grouped by `keys` and `ok` (SUCCEEDED) folded into one dict per key: the successful rows'
    figures, `responses` and the other ALL_ROWS figures over every row, `errors` the failed rows."""
    out: dict = {}
    for row in rows:
        key = tuple(row.pop(k) for k in keys)
        ok = row.pop("ok")
        into = out.get(key)
        if into is None:
            into = out[key] = {**dict.fromkeys(row, 0), "errors": 0}
        if ok:
            for name, value in row.items():
                if value:
                    into[name] += value
        else:
            for name in ALL_ROWS:
                if row.get(name):
                    into[name] += row[name]
            into["errors"] += row["responses"]
    return out


def _summary(row: dict, prefix: str) -> stats.Summary:
    return stats.from_moments(row[f"{prefix}_n"], row[f"{prefix}_sum"], row[f"{prefix}_sq"])


def _positive_summary(row: dict, prefix: str) -> stats.Summary:
    return stats.positive_from_moments(row[f"{prefix}_n"], row[f"{prefix}_sum"], row[f"{prefix}_sq"])


def _simulated_count(filters: Filters) -> dict:
    """A count of the simulated responses in each group, when they may be there at all."""
    return {"simulated_n": Count("id", filter=Q(is_simulated=True))} if filters.include_simulated else {}


# --- quality trends -------------------------------------------------------------------------------


def quality_trends(team, filters: Filters) -> dict:
    """Per day or week: responses, n, mean of the chosen metric with its interval, and every quality
    metric's mean; the direction of a linear fit through the period means, the best period."""
    trunc = TruncDay if filters.granularity == "day" else TruncWeek
    aggregates = {"responses": Count("id"), **_simulated_count(filters)}
    for metric in QUALITY_METRICS:
        if metric == filters.metric:
            aggregates.update(_moments(metric, metric_expression(metric), ok_filter=False))
        else:  # only the mean of the other metrics: no sum of squares to compute
            expression = metric_expression(metric)
            aggregates.update({f"{metric}_n": Count(expression), f"{metric}_sum": Sum(expression)})
    grouped = _by_key(
        responses(team, filters).annotate(period=trunc("created_at"), ok=SUCCEEDED)
        .values("period", "ok").annotate(**aggregates),
        ("period",),
    )  # fmt: skip
    points = []
    for (period,), row in sorted(grouped.items()):
        main = _summary(row, filters.metric)
        points.append({
            "period": period.date(), "responses": row["responses"], "errors": row["errors"],
            **asdict(main), "simulated": bool(row.get("simulated_n")),
            "metrics": {m: (row[f"{m}_sum"] / row[f"{m}_n"] if row[f"{m}_n"] else None) for m in QUALITY_METRICS},
        })  # fmt: skip
    measured = [p for p in points if p["n"]]
    first = measured[0]["period"] if measured else None
    fit = stats.trend([(p["period"] - first).days for p in measured], [p["mean"] for p in measured])
    best = max(measured, key=lambda p: p["mean"]) if measured else None
    total = stats.pooled([(p["n"], p["mean"] * p["n"], 0.0) for p in measured]) if measured else (0, 0.0, 0.0)
    return as_json({
        "metric": filters.metric, "unit": "points", "granularity": filters.granularity, "filters": filters.as_json(),
        "n": total[0], "responses": sum(p["responses"] for p in points), "mean": total[1] / total[0] if total[0] else None,
        "points": points, "trend": fit, "simulated": any(p["simulated"] for p in points),
        "best_period": {"period": best["period"], "mean": best["mean"], "n": best["n"]} if best else None,
    })  # fmt: skip


# --- breakdown ------------------------------------------------------------------------------------

HISTOGRAM_BINS = 10  # 0–10, 10–20 … 90–100 points (100 joins the last bin)


def _group_labels(team, dimension: str, keys) -> dict:
    if dimension in ("test_case", "tag"):
        cases = TestCase.objects.filter(team=team, pk__in=[k for k in keys if k is not None])
        return {c.pk: c for c in cases.only("pk", "title", "version", "tags")}
    return {}


def breakdown(team, filters: Filters, dimension: str) -> dict:
    """Per model, test case, tag or evaluator: responses and errors, pass rate with its Wilson
    interval, each quality metric's mean with its t interval, and a histogram of the chosen metric."""
    key = DIMENSIONS[dimension]
    rows = responses(team, filters)
    if dimension != "model":
        rows = rows.filter(test_case__isnull=False)
    aggregates = {"responses": Count("id"), "evaluated": Count("passed"), "passed_n": Count("id", filter=Q(passed=True)),
                  **_simulated_count(filters)}  # fmt: skip
    for metric in (*TEXT_METRICS, "score"):
        aggregates.update(_moments(metric, metric_expression(metric), ok_filter=False))
    # One pass: grouped by the key, success and the histogram bin of the chosen metric (NULL for a missing
    # value); the key's figures are its bins' figures added up.
    histograms: dict = defaultdict(lambda: [0] * HISTOGRAM_BINS)
    binned = []
    for row in (rows.annotate(ok=SUCCEEDED, bin=Floor(metric_expression(filters.metric) / 10.0))
                .values(key, "ok", "bin").annotate(**aggregates)):  # fmt: skip
        bin_index = row.pop("bin")
        if row["ok"] and bin_index is not None:
            histograms[row[key]][min(max(int(bin_index), 0), HISTOGRAM_BINS - 1)] += row["responses"]
        binned.append(row)
    grouped = [{key: group, **figures} for (group,), figures in _by_key(binned, (key,)).items()]
    labels = _group_labels(team, dimension, [row[key] for row in grouped])

    def group_names(value) -> list[str]:
        if dimension == "tag":
            case = labels.get(value)
            return list(case.tags or []) if case else []
        if dimension == "test_case":
            case = labels.get(value)
            return [f"{case.title} v{case.version}" if case else f"test case {value}"]
        return [str(value)]

    # Counts and sums add, so a tag's figures are its test cases' figures pooled.
    pooled: dict = {}
    for row in grouped:
        for name in group_names(row[key]):
            into = pooled.setdefault(name, {k: 0 for k in row if k != key} | {"histogram": [0] * HISTOGRAM_BINS})
            for k, v in row.items():
                if k != key:
                    into[k] += v or 0
            into["histogram"] = [a + b for a, b in zip(into["histogram"], histograms[row[key]], strict=True)]
    groups = []
    for name, row in sorted(pooled.items(), key=lambda item: (-item[1]["responses"], item[0])):
        wilson = stats.pass_rate_interval(row["passed_n"], row["evaluated"])
        groups.append({
            "group": name, "responses": row["responses"], "errors": row["errors"],
            "evaluated": row["evaluated"], "passed": row["passed_n"],
            "pass_rate": 100 * row["passed_n"] / row["evaluated"] if row["evaluated"] else None,
            "pass_rate_ci": list(wilson) if wilson else None, "pass_rate_enough_data": wilson is not None,
            "metrics": {m: asdict(_summary(row, m)) for m in (*TEXT_METRICS, "score")},
            "histogram": row["histogram"], "simulated": bool(row.get("simulated_n")),
        })  # fmt: skip
    note = "" if dimension == "model" else "responses to a prompt without a test case are left out"
    if dimension == "tag":
        note += "; a test case with several tags counts in each"
    return as_json({"dimension": dimension, "metric": filters.metric, "histogram_bins": HISTOGRAM_BINS,
                    "filters": filters.as_json(), "groups": groups, "note": note,
                    "simulated": any(g["simulated"] for g in groups)})  # fmt: skip


# --- model comparison -----------------------------------------------------------------------------


def _target_label(endpoint_name: str, model: str) -> str:
    return f"{endpoint_name} · {model}"


def model_comparison(team, filters: Filters) -> dict:
    """Per target (endpoint · model): mean of the metric with its t interval, pass rate with its
    Wilson interval, latency and cost; every pair compared with Wilcoxon signed-rank on the per-test-
    case means where they share test cases (2 or more), else Mann-Whitney on the responses; p-values
    Holm-corrected over the pairs."""
    rows = responses(team, filters)
    expression = metric_expression(filters.metric)
    keys = ("target__endpoint__name", "target__model")
    # One pass, per target and test case: a target's figures are its test cases' figures added up, and the
    # per-test-case means feed the paired test.
    by_target: dict = {}
    per_case: dict = defaultdict(dict)
    per_case_moments: dict = defaultdict(dict)
    # Grouped by the endpoint's id, not its name: one join fewer over every row (names are looked up after).
    by_case = _by_key(
        rows.annotate(ok=SUCCEEDED).values("target__endpoint_id", "target__model", "test_case_id", "ok").annotate(
            responses=Count("id"), evaluated=Count("passed"), passed_n=Count("id", filter=Q(passed=True)),
            **_moments("latency", F("latency_ms"), ok_filter=False),
            **_moments("ttft", F("ttft_ms"), ok_filter=False), cost=Sum("cost_usd"),
            **_moments("m", expression, ok_filter=False), **_simulated_count(filters),
        ),
        ("target__endpoint_id", "target__model", "test_case_id"),
    )  # fmt: skip
    endpoint_names = dict(ProviderEndpoint.objects.filter(pk__in={key[0] for key in by_case}).values_list("pk", "name"))
    for (endpoint_id, model, case), row in by_case.items():
        target = (endpoint_names[endpoint_id], model)
        into = by_target.setdefault(target, dict.fromkeys(row, 0))
        for k, v in row.items():
            into[k] += v or 0
        if case is not None:  # two endpoints of one name are one target: their per-case figures add up too
            cell = per_case_moments[target].setdefault(case, [0, 0.0])
            cell[0] += row["m_n"]
            cell[1] += row["m_sum"] or 0.0
    for target, cases in per_case_moments.items():
        per_case[target] = {case: total / n for case, (n, total) in cases.items() if n}
    grouped = [{keys[0]: target[0], keys[1]: target[1], **figures} for target, figures in by_target.items()]
    grouped.sort(key=lambda r: (-r["responses"], _target_label(r[keys[0]], r[keys[1]])))
    targets = []
    for row in grouped:
        wilson = stats.pass_rate_interval(row["passed_n"], row["evaluated"])
        latency, ttft = _positive_summary(row, "latency"), _positive_summary(row, "ttft")
        targets.append({
            "target": _target_label(row[keys[0]], row[keys[1]]), "endpoint": row[keys[0]], "model": row[keys[1]],
            "responses": row["responses"], "errors": row["errors"], **asdict(_summary(row, "m")),
            "evaluated": row["evaluated"], "passed": row["passed_n"],
            "pass_rate": 100 * row["passed_n"] / row["evaluated"] if row["evaluated"] else None,
            "pass_rate_ci": list(wilson) if wilson else None, "pass_rate_enough_data": wilson is not None,
            "mean_latency_ms": latency.mean, "mean_latency_ci": _ci(latency),
            "mean_ttft_ms": ttft.mean, "mean_ttft_ci": _ci(ttft),
            "cost_usd": float(row["cost"] or 0.0),
            "cost_per_response_usd": float(row["cost"] or 0.0) / row["responses"] if row["responses"] else None,
            "simulated": bool(row.get("simulated_n")),
        })  # fmt: skip
    compared = targets[:MAX_COMPARED]
    names = {(t["endpoint"], t["model"]) for t in compared}
    value_counts = None
    pairs, simulated = [], []
    paired = []  # (index in pairs, a's per-test-case means, b's): one batch of Wilcoxon tests
    for i, a in enumerate(compared):
        for b in compared[i + 1 :]:
            ka, kb = (a["endpoint"], a["model"]), (b["endpoint"], b["model"])
            shared = sorted(set(per_case[ka]) & set(per_case[kb]))
            test = None
            if len(shared) >= 2:
                paired.append((len(pairs), [per_case[ka][c] for c in shared], [per_case[kb][c] for c in shared]))
            else:
                if value_counts is None:
                    value_counts = _value_counts(rows, keys, expression, names)
                va, vb = value_counts.get(ka, ([], [])), value_counts.get(kb, ([], []))
                test = asdict(stats.mann_whitney_counts(va[0], va[1], vb[0], vb[1]))
            difference = a["mean"] - b["mean"] if a["mean"] is not None and b["mean"] is not None else None
            pairs.append({"a": a["target"], "b": b["target"], "difference": difference, "shared_test_cases": len(shared),
                          **(test or {})})  # fmt: skip
            simulated.append(a["simulated"] or b["simulated"])
    tests = stats.wilcoxon_paired_many([(x, y) for _, x, y in paired])
    for (index, _, _), test in zip(paired, tests, strict=True):
        pairs[index].update(asdict(test))
    for pair, flag in zip(pairs, simulated, strict=True):
        pair["simulated"] = flag
    for pair, adjusted in zip(pairs, stats.holm([p["p_value"] for p in pairs]), strict=True):
        pair["p_holm"] = adjusted
        pair["significant"] = adjusted is not None and adjusted < stats.ALPHA
    note = (
        f"the {MAX_COMPARED} targets with the most responses are compared pairwise"
        if len(targets) > MAX_COMPARED
        else ""
    )
    return as_json({"metric": filters.metric, "unit": "points", "filters": filters.as_json(), "targets": targets,
                    "pairs": pairs, "note": note, "simulated": any(t["simulated"] for t in targets)})  # fmt: skip


def _ci(summary: stats.Summary) -> list[float] | None:
    return [summary.ci_low, summary.ci_high] if summary.ci_low is not None else None


def _value_counts(rows, keys, expression, names) -> dict:
    """Per target: the distinct values of the metric and how often each occurs (for Mann-Whitney)."""
    collected: dict = defaultdict(lambda: ([], []))
    for row in (
        rows.filter(OK).annotate(v=expression).exclude(v__isnull=True).values(*keys, "v").annotate(c=Count("id"))
    ):
        key = (row[keys[0]], row[keys[1]])
        if key in names:
            collected[key][0].append(row["v"])
            collected[key][1].append(row["c"])
    return collected


# --- parameters -----------------------------------------------------------------------------------


def parameter_observations(team, filters: Filters, *, limit: int = PARAMETER_SAMPLE) -> dict:
    """Successful responses as arrays (parameters and figures), every k-th by id when there are more
    than `limit`, so the same filter always reads the same sample."""
    rows = responses(team, filters).filter(OK)
    span = rows.aggregate(total=Count("id"), first=Min("id"), last=Max("id"))
    total = span["total"]
    step = max(1, math.ceil(total / limit))
    if step > 1:
        rows = _multiples_of(rows, step, span["first"], span["last"], limit)
    columns = (*PARAMETER_NAMES, *(f"quality_{m}" for m in TEXT_METRICS), "score", "passed", "latency_ms",
               "ttft_ms", "cost_usd", "is_simulated")  # fmt: skip
    data = list(rows.order_by("id").values_list(*columns)[:limit])
    table = np.array(data, dtype=float).reshape(len(data), len(columns))  # NULL becomes NaN, booleans 1 and 0
    parameters = {name: table[:, i] for i, name in enumerate(PARAMETER_NAMES)}
    parameters = {n: v for n, v in parameters.items() if len(np.unique(v[np.isfinite(v)])) > 1}
    offset = len(PARAMETER_NAMES)
    metrics = {m: table[:, offset + i] for i, m in enumerate(TEXT_METRICS)}
    offset += len(TEXT_METRICS)
    metrics["score"] = table[:, offset] * 100
    metrics["pass_rate"] = table[:, offset + 1] * 100
    for i, name in enumerate(("latency_ms", "ttft_ms", "cost_usd"), start=offset + 2):
        metrics[name] = table[:, i]
    simulated = table[:, -1] == 1
    return {"parameters": parameters, "metrics": metrics, "n": len(data), "total": total, "step": step,
            "simulated": simulated}  # fmt: skip


def _simulated_in(data: dict, parameter: str | None = None, metric: str | None = None, value=None) -> bool:
    """Whether a simulated response is among the rows a figure used: those with the parameter (at the
    value) and the metric."""
    rows = data["simulated"].copy()
    if parameter in data["parameters"]:
        x = data["parameters"][parameter]
        rows &= np.isfinite(x) if value is None else x == value
    if metric in data["metrics"]:
        rows &= np.isfinite(data["metrics"][metric])
    return bool(rows.any())


def _flag_items(data: dict, items: list[dict]) -> list[dict]:
    """Each correlation, effect (and each of its values), optimal value and insight with its `simulated`."""
    if not data["simulated"].any():
        for item in items:
            item["simulated"] = False
            for value in item.get("values") or []:
                value["simulated"] = False
        return items
    for item in items:
        parameter, metric = item.get("parameter"), item.get("metric")
        item["simulated"] = _simulated_in(data, parameter, metric)
        for value in item.get("values") or []:
            value["simulated"] = _simulated_in(data, parameter, metric, value["value"])
    return items


def _multiples_of(rows, step: int, first: int, last: int, limit: int):
    """The rows whose id is a multiple of `step`. On PostgreSQL, when the ids between the first and the last
    hold few multiples, each is looked up by primary key (generate_series) instead of scanning the table a
    second time: the same rows, in a third of the time."""
    start = -(-first // step) * step
    if connection.vendor == "postgresql" and (last - start) // step < 4 * limit:
        return rows.filter(id__in=RawSQL("SELECT generate_series(%s, %s, %s)", (start, last, step)))
    return rows.annotate(bucket=F("id") % step).filter(bucket=0)


def _sample_note(data: dict) -> str:
    if data["step"] == 1:
        return f"all {data['total']:,} successful responses in the filter"
    return f"a sample of {data['n']:,} of {data['total']:,} successful responses (every {data['step']}th by id)"


def parameter_optimization(team, filters: Filters, objective: analysis.Objective) -> dict:
    data = parameter_observations(team, filters)
    result = as_json(analysis.optimize(data["parameters"], data["metrics"], objective))
    _flag_items(data, result.get("optimal") or [])
    best = result.get("best_combination")
    if best:
        best["simulated"] = bool(data["simulated"].any()) and _simulated_in_combination(data, best["parameters"])
    return as_json({"filters": filters.as_json(), "sample": _sample_note(data), "n": data["n"],
                    "parameters": list(data["parameters"]), **result,
                    "simulated": bool(data["simulated"].any())})  # fmt: skip


def _simulated_in_combination(data: dict, combination: dict) -> bool:
    rows = data["simulated"].copy()
    for name, value in combination.items():
        if name in data["parameters"]:
            rows &= data["parameters"][name] == value
    return bool(rows.any())


def parameter_correlation(team, filters: Filters) -> dict:
    data = parameter_observations(team, filters)
    correlations = as_json(analysis.correlations(data["parameters"], data["metrics"]))
    # The mean at each value for the chosen metric only: with a swept parameter of 100 values, every
    # figure's table would be thousands of rows (and most of the time).
    effects = as_json(analysis.effects(data["parameters"], {filters.metric: data["metrics"][filters.metric]}))
    return as_json({"filters": filters.as_json(), "sample": _sample_note(data), "n": data["n"],
                    "parameters": list(data["parameters"]), "correlations": _flag_items(data, correlations),
                    "effects": _flag_items(data, effects), "simulated": bool(data["simulated"].any())})  # fmt: skip


def parameter_insights(team, filters: Filters, objective: analysis.Objective) -> dict:
    data = parameter_observations(team, filters)
    # Insights cite correlations with the objective, latency and cost only: test just those.
    cited = {m: v for m, v in data["metrics"].items()
             if m in (objective.quality_metric if objective.weights else objective.metric, "latency_ms", "cost_usd")}  # fmt: skip
    found = analysis.insights(data["parameters"], data["metrics"], objective=objective,
                              correlation_list=analysis.correlations(data["parameters"], cited))  # fmt: skip
    return as_json({"filters": filters.as_json(), "sample": _sample_note(data), "n": data["n"],
                    "objective": objective.name, "insights": _flag_items(data, as_json(found)),
                    "simulated": bool(data["simulated"].any())})  # fmt: skip


# --- regressions ----------------------------------------------------------------------------------


def _quality_regressions(team, include_simulated: bool) -> list[dict]:
    """Per target (endpoint · model): its latest finished experiment against the previous one (without
    simulated responses, an experiment that has only those does not count)."""
    from apps.experiments.models import Response

    appearances: dict = defaultdict(list)
    finished = ExperimentTarget.objects.filter(
        experiment__team=team, experiment__status__in=[Experiment.Status.COMPLETED, Experiment.Status.CANCELLED]
    )
    if not include_simulated:
        finished = finished.filter(Exists(Response.objects.filter(target=OuterRef("pk"), is_simulated=False)))
    finished = finished.values_list(
        "experiment_id", "experiment__name", "experiment__finished_at", "endpoint__name", "model"
    )
    for experiment_id, name, finished_at, endpoint, model in finished:
        appearances[(endpoint, model)].append((finished_at, experiment_id, name))
    chosen: dict = {}
    for key, seen in appearances.items():
        seen = sorted(set(seen), key=lambda s: (s[0] is not None, s[0], s[1]))
        if len(seen) >= 2:
            chosen[key] = (seen[-1], seen[-2])
    if not chosen:
        return []
    experiment_ids = {s[1] for pair in chosen.values() for s in pair}
    rows = Response.objects.filter(experiment_id__in=experiment_ids).order_by()
    if not include_simulated:
        rows = rows.filter(is_simulated=False)
    simulated = {"simulated_n": Count("id", filter=Q(is_simulated=True))} if include_simulated else {}
    figures = {}
    for row in (
        rows.values("experiment_id", "target__endpoint__name", "target__model")
        .annotate(evaluated=Count("passed", filter=OK), passed_n=Count("id", filter=OK & Q(passed=True)),
                  **_moments("s", metric_expression("score")), **simulated)
    ):  # fmt: skip
        figures[(row["experiment_id"], row["target__endpoint__name"], row["target__model"])] = row
    out = []
    for (endpoint, model), (latest, previous) in sorted(chosen.items()):
        now, before = figures.get((latest[1], endpoint, model)), figures.get((previous[1], endpoint, model))
        if not now or not before:
            continue
        base = {"kind": "quality", "subject": _target_label(endpoint, model), "latest": latest[2],
                "latest_id": latest[1], "previous": previous[2], "previous_id": previous[1],
                "simulated": bool(now.get("simulated_n") or before.get("simulated_n"))}  # fmt: skip
        if now["evaluated"] and before["evaluated"]:
            rate_now = 100 * now["passed_n"] / now["evaluated"]
            rate_before = 100 * before["passed_n"] / before["evaluated"]
            test = stats.fisher(now["passed_n"], now["evaluated"], before["passed_n"], before["evaluated"])
            out.append({**base, "metric": "pass_rate", "unit": "%", "value": rate_now, "previous_value": rate_before,
                        "n": now["evaluated"], "previous_n": before["evaluated"], "higher_is_better": True,
                        **asdict(test)})  # fmt: skip
        score_now, score_before = _summary(now, "s"), _summary(before, "s")
        if score_now.n and score_before.n:
            test = stats.welch(score_now, score_before)
            out.append({**base, "metric": "mean_score", "unit": "points", "value": score_now.mean,
                        "previous_value": score_before.mean, "n": score_now.n, "previous_n": score_before.n,
                        "higher_is_better": True, **asdict(test)})  # fmt: skip
    return out


PERFORMANCE_FIGURES = (
    # (figure shown, value from the summary, the per-request metric tested, higher is better)
    ("ttft_p95_ms", ("ttft_ms", "p95"), "ttft_ms", False),
    ("tpot_mean_ms", ("tpot_ms", "mean"), "tpot_ms", False),
    ("output_tps_mean", ("output_tps", "mean"), "output_tps", True),
)


def _run_summary(metrics: dict, name: str) -> stats.Summary:
    figures = metrics.get(name) or {}
    n, mean, sd = figures.get("count"), figures.get("mean"), figures.get("stdev")
    if not n or mean is None:
        return stats.Summary(0, None, None, None, None)
    return stats.Summary(int(n), float(mean), None if sd is None else float(sd), None, None)


def _performance_regressions(team, include_simulated: bool) -> list[dict]:
    """Per model variant × hardware × deployment × workload: the latest run against the previous one."""
    runs = PerformanceRun.objects.filter(team=team, summary__isnull=False)
    if not include_simulated:
        runs = runs.filter(is_simulated=False)
    # The series and their order from plain columns, in time order from the database (reading 2,000
    # timestamps into Python costs more than the rest); the summaries (JSON) of the two latest runs only.
    latest_two: dict = {}
    for pk, *key in runs.order_by(Coalesce("started_at", "created_at"), "pk").values_list(
        "pk", "variant_id", "hardware_id", "deployment_id", "concurrency", "request_rate_rps",
        "input_tokens_target", "output_tokens_target", "dataset",
    ):  # fmt: skip
        key = tuple(key)
        latest_two[key] = (pk, latest_two[key][0] if key in latest_two else None)
    pairs = [pair for pair in latest_two.values() if pair[1] is not None]
    loaded = (
        PerformanceRun.objects.filter(pk__in=[pk for pair in pairs for pk in pair])
        .select_related("variant", "hardware", "deployment", "summary")
        .only("pk", "name", "concurrency", "request_rate_rps", "is_simulated", "variant__model_name",
              "variant__quantization", "hardware__name", "deployment__name", "summary__metrics")
        .in_bulk()
    )  # fmt: skip
    out = []
    for latest_pk, previous_pk in pairs:
        latest, previous = loaded[latest_pk], loaded[previous_pk]
        subject = latest.label + (f" · {latest.deployment}" if latest.deployment_id else "")
        base = {"kind": "performance", "subject": subject, "latest": str(latest), "latest_id": latest.pk,
                "previous": str(previous), "previous_id": previous.pk,
                "simulated": latest.is_simulated or previous.is_simulated}  # fmt: skip
        for figure, (metric, key), tested, higher in PERFORMANCE_FIGURES:
            value = (latest.summary.metrics.get(metric) or {}).get(key)
            before = (previous.summary.metrics.get(metric) or {}).get(key)
            if value is None or before is None:
                continue
            now_s, before_s = (
                _run_summary(latest.summary.metrics, tested),
                _run_summary(previous.summary.metrics, tested),
            )
            test = stats.welch(now_s, before_s)
            out.append({**base, "metric": figure, "unit": analysis.unit(metric) or "tokens/s", "value": value,
                        "previous_value": before, "n": now_s.n, "previous_n": before_s.n, "higher_is_better": higher,
                        **asdict(test), "note": f"Welch t test on the per-request {tested} means"})  # fmt: skip
    return out


def regressions(team, *, include_simulated: bool | None = None) -> dict:
    """Latest against previous comparable run, for quality (pass rate: Fisher exact; mean score:
    Welch) and performance (TTFT p95, TPOT, throughput: Welch on the per-request means the summaries
    store). p-values are Holm-corrected over every comparison; a regression is a significant change
    for the worse, an improvement one for the better. Simulated results only with `include_simulated`
    (None: the team's `show_simulated`)."""
    if include_simulated is None:
        include_simulated = bool(team.show_simulated)
    found = _quality_regressions(team, include_simulated) + _performance_regressions(team, include_simulated)
    for item, adjusted in zip(found, stats.holm([f["p_value"] for f in found]), strict=True):
        item["p_holm"] = adjusted
        significant = adjusted is not None and adjusted < stats.ALPHA
        change = item["value"] - item["previous_value"]
        item["change"] = change
        item["change_pct"] = change / abs(item["previous_value"]) * 100 if item["previous_value"] else None
        better = change > 0 if item["higher_is_better"] else change < 0
        item["status"] = (
            ("improvement" if better else "regression") if significant and change else "no significant change"
        )
    found.sort(key=lambda f: (f["status"] != "regression", f["status"] != "improvement", f["kind"], f["subject"]))
    return as_json({"comparisons": found, "regressions": sum(f["status"] == "regression" for f in found),
                    "improvements": sum(f["status"] == "improvement" for f in found),
                    "include_simulated": include_simulated, "simulated": any(f["simulated"] for f in found)})  # fmt: skip


# --- leaderboard ----------------------------------------------------------------------------------

LEADERBOARD_AXES = ("quality", "speed", "cost")


def parse_weights(raw: str | None) -> dict[str, float]:
    """`quality:0.5,speed:0.3,cost:0.2` (the default); raises ValueError naming the bad part."""
    if not (raw or "").strip():
        return {"quality": 0.5, "speed": 0.3, "cost": 0.2}
    weights = {}
    for part in raw.split(","):
        name, _, number = part.partition(":")
        name = name.strip()
        if name not in LEADERBOARD_AXES:
            raise ValueError(f"{name!r}: weigh quality, speed and cost, e.g. quality:0.5,speed:0.3,cost:0.2")
        try:
            weight = float(number)
        except ValueError:
            raise ValueError(f"{name}: a number after the colon, not {number!r}") from None
        if not (0 <= weight < float("inf")):
            raise ValueError(f"{name}: a weight of 0 or more")
        weights[name] = weight
    if not any(w > 0 for w in weights.values()):
        raise ValueError("at least one weight above 0")
    return weights


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def leaderboard(team, filters: Filters, weights: dict[str, float]) -> dict:
    """Per model variant and deployment (simulated runs, responses and scores only with the filter's
    `include_simulated`): the mean of its benchmark scores (the one measured here where a benchmark has both a
    measured and an imported score; `benchmarks_measured` counts them) and its own test-case
    quality (mean evaluator score of responses from a model of that name), median TTFT p50 and output
    throughput over its performance runs, and the cost per 1M output tokens on its hardware (hourly cost ÷
    throughput). Each axis scaled 0–1 over the rows (1 = best), mixed with the weights; the Pareto front is
    over quality (benchmark score, else own quality), throughput and cost."""
    variants = {v.pk: v for v in ModelVariant.objects.filter(team=team)}
    # The scores as the score leaderboard holds them: one per variant and benchmark, the one measured here
    # where a variant has both a measured and an imported score.
    benchmark_ids = list(Benchmark.objects.filter(team=team).values_list("pk", flat=True))
    matrix = score_matrix(team=team, variant_ids=list(variants), benchmark_ids=benchmark_ids,
                          include_simulated=filters.include_simulated, all_variants=True, all_benchmarks=True)  # fmt: skip
    present = matrix.present
    benchmark, simulated_scores, measured_scores = {}, set(), {}
    for i, variant_id in enumerate(matrix.variant_ids):
        if present[i].any():
            benchmark[variant_id] = matrix.values[i][present[i]].tolist()
            measured_scores[variant_id] = int(matrix.measured[i].sum())
            if matrix.simulated[i].any():
                simulated_scores.add(variant_id)
    # Per target (no join to the targets for 200,000 rows), then per model name in Python.
    per_model: dict = defaultdict(lambda: [0, 0.0, 0])
    per_target = (
        responses(team, filters).filter(OK).values("target_id")
        .annotate(n=Count("score"), total=Sum("score"), **_simulated_count(filters))
    )  # fmt: skip
    per_target = {row["target_id"]: row for row in per_target if row["n"]}
    for target_id, model in ExperimentTarget.objects.filter(pk__in=list(per_target)).values_list("pk", "model"):
        row, into = per_target[target_id], per_model[model.lower()]
        into[0] += row["n"]
        into[1] += row["total"] * 100  # the evaluator score on the 0–100 scale
        into[2] += row.get("simulated_n") or 0
    own = {model: (total / n, n, bool(simulated)) for model, (n, total, simulated) in per_model.items()}
    # Plain values (the TTFT p50 read out of the summary's JSON by the database): no model instances.
    runs = defaultdict(list)
    measured = PerformanceRun.objects.filter(team=team, summary__isnull=False)
    if not filters.include_simulated:
        measured = measured.filter(is_simulated=False)
    for variant_id, deployment, hourly_cost, throughput, ttft_p50, simulated in measured.values_list(
        "variant_id", "deployment__name", "hardware__hourly_cost_usd", "summary__output_token_throughput_tps",
        "summary__metrics__ttft_ms__p50", "is_simulated",
    ):  # fmt: skip
        runs[(variant_id, deployment or "")].append((hourly_cost, throughput, ttft_p50, simulated))
    keys = set(runs) | {(pk, "") for pk in variants if not any(k[0] == pk for k in runs)}
    rows = []
    for variant_id, deployment in sorted(keys, key=lambda k: (str(variants[k[0]]), k[1])):
        variant, members = variants[variant_id], runs.get((variant_id, deployment), [])
        throughput = [tps for _, tps, _, _ in members if tps]
        ttft = [float(p50) for _, _, p50, _ in members if isinstance(p50, int | float)]
        costs = [hourly / (tps * 3600) * 1e6 for hourly, tps, _, _ in members if hourly and tps]
        own_quality = own.get(variant.model_name.lower())
        bench = benchmark.get(variant_id)
        rows.append({
            "variant": str(variant), "variant_id": variant_id, "model": variant.model_name,
            "quantization": variant.quantization, "deployment": deployment, "runs": len(members),
            "benchmark_score_pct": float(np.mean(bench)) if bench else None, "benchmarks": len(bench or []),
            "benchmarks_measured": measured_scores.get(variant_id, 0),
            "own_quality": own_quality[0] if own_quality else None, "own_quality_n": own_quality[1] if own_quality else 0,
            "ttft_p50_ms": _median(ttft), "output_tps": _median(throughput),
            "cost_per_1m_output_usd": _median(costs),
            "simulated": any(m[3] for m in members) or bool(own_quality and own_quality[2])
            or variant_id in simulated_scores,
        })  # fmt: skip
    for row in rows:
        row["quality"] = row["benchmark_score_pct"] if row["benchmark_score_pct"] is not None else row["own_quality"]
    scaled = {
        "quality": stats.min_max([r["quality"] for r in rows], higher_is_better=True),
        "speed": stats.min_max([r["output_tps"] for r in rows], higher_is_better=True),
        "cost": stats.min_max([r["cost_per_1m_output_usd"] for r in rows], higher_is_better=False),
    }
    used = {axis: w for axis, w in weights.items() if w > 0}
    front = stats.pareto_front(
        [(r["quality"], r["output_tps"], r["cost_per_1m_output_usd"]) for r in rows], (True, True, False)
    )
    for i, row in enumerate(rows):
        parts = {axis: scaled[axis][i] for axis in used}
        row["scaled"] = {axis: scaled[axis][i] for axis in LEADERBOARD_AXES}
        row["composite"] = (
            100 * sum(used[a] * v for a, v in parts.items()) / sum(used.values())
            if all(v is not None for v in parts.values()) else None
        )  # fmt: skip
        row["pareto"] = front[i]
    rows.sort(key=lambda r: (r["composite"] is None, -(r["composite"] or 0), r["variant"], r["deployment"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank if row["composite"] is not None else None
    return as_json({"weights": weights, "filters": filters.as_json(), "rows": rows,
                    "note": "a row missing a weighted axis is not ranked", "simulated": any(r["simulated"] for r in rows)})  # fmt: skip
