"""Analytics across every experiment, parameter sweep and performance run of a team.

Quality figures are on the 0–100 scale of the batch analysis: text-quality metrics as stored, the
evaluator score × 100 and pass/fail as 100/0. Failed requests are counted, never averaged in. The
database aggregates (counts, sums, sums of squares, value counts); numpy/scipy do the rest
(apps.analytics.stats), so a view over 200,000 responses reads a few hundred rows.
"""

import math
from collections import defaultdict
from dataclasses import asdict

import numpy as np
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Floor, TruncDay, TruncWeek

from apps.analytics import stats
from apps.analytics.filters import Filters, responses
from apps.batches import analysis
from apps.batches.selectors import QUALITY_METRICS, TEXT_METRICS, as_json, metric_expression
from apps.experiments.models import Experiment, ExperimentTarget, TestCase
from apps.hardware.models import PerformanceRun
from apps.scores.models import ModelVariant, Score

OK = Q(error_code="")
DIMENSIONS = {"model": "target__model", "test_case": "test_case_id", "tag": "test_case_id",
              "evaluator": "test_case__evaluator"}  # fmt: skip
PARAMETER_NAMES = ("temperature", "top_p", "max_tokens", "frequency_penalty", "presence_penalty")
PARAMETER_SAMPLE = 10_000  # rows the parameter analytics read at most (a deterministic sample)
MAX_COMPARED = 12  # models compared pairwise at most (the largest by responses)


def _moments(prefix: str, expression) -> dict:
    """Aggregates whose results `_summary` turns into n, mean, sd and interval."""
    return {
        f"{prefix}_n": Count(expression, filter=OK),
        f"{prefix}_sum": Sum(expression, filter=OK),
        f"{prefix}_sq": Sum(expression * expression, filter=OK),
    }


def _summary(row: dict, prefix: str) -> stats.Summary:
    return stats.from_moments(row[f"{prefix}_n"], row[f"{prefix}_sum"], row[f"{prefix}_sq"])


# --- quality trends -------------------------------------------------------------------------------


def quality_trends(team, filters: Filters) -> dict:
    """Per day or week: responses, n, mean of the chosen metric with its interval, and every quality
    metric's mean; the direction of a linear fit through the period means, the best period."""
    trunc = TruncDay if filters.granularity == "day" else TruncWeek
    aggregates = {"responses": Count("id"), "errors": Count("id", filter=~OK)}
    for metric in QUALITY_METRICS:
        aggregates.update(_moments(metric, metric_expression(metric)))
    rows = (
        responses(team, filters).annotate(period=trunc("created_at")).values("period").annotate(**aggregates)
    ).order_by("period")
    points = []
    for row in rows:
        main = _summary(row, filters.metric)
        points.append({
            "period": row["period"].date(), "responses": row["responses"], "errors": row["errors"],
            **asdict(main),
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
        "points": points, "trend": fit,
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
    aggregates = {"responses": Count("id"), "errors": Count("id", filter=~OK),
                  "evaluated": Count("passed", filter=OK), "passed": Count("id", filter=OK & Q(passed=True))}  # fmt: skip
    for metric in (*TEXT_METRICS, "score"):
        aggregates.update(_moments(metric, metric_expression(metric)))
    grouped = list(rows.values(key).annotate(**aggregates))
    expression = metric_expression(filters.metric)
    bins = (
        rows.filter(OK).annotate(v=expression).filter(v__isnull=False)
        .annotate(bin=Floor(F("v") / 10.0)).values(key, "bin").annotate(count=Count("id"))
    )  # fmt: skip
    histograms: dict = defaultdict(lambda: [0] * HISTOGRAM_BINS)
    for row in bins:
        if row["bin"] is not None:
            histograms[row[key]][min(max(int(row["bin"]), 0), HISTOGRAM_BINS - 1)] += row["count"]
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
        wilson = stats.wilson_interval(row["passed"], row["evaluated"])
        groups.append({
            "group": name, "responses": row["responses"], "errors": row["errors"],
            "evaluated": row["evaluated"], "passed": row["passed"],
            "pass_rate": 100 * row["passed"] / row["evaluated"] if row["evaluated"] else None,
            "pass_rate_ci": [100 * wilson[0], 100 * wilson[1]] if wilson else None,
            "metrics": {m: asdict(_summary(row, m)) for m in (*TEXT_METRICS, "score")},
            "histogram": row["histogram"],
        })  # fmt: skip
    note = "" if dimension == "model" else "responses to a prompt without a test case are left out"
    if dimension == "tag":
        note += "; a test case with several tags counts in each"
    return as_json({"dimension": dimension, "metric": filters.metric, "histogram_bins": HISTOGRAM_BINS,
                    "filters": filters.as_json(), "groups": groups, "note": note})  # fmt: skip


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
    grouped = list(
        rows.values(*keys).annotate(
            responses=Count("id"), errors=Count("id", filter=~OK), evaluated=Count("passed", filter=OK),
            passed=Count("id", filter=OK & Q(passed=True)), latency_n=Count("latency_ms", filter=OK),
            latency_sum=Sum("latency_ms", filter=OK), ttft_n=Count("ttft_ms", filter=OK),
            ttft_sum=Sum("ttft_ms", filter=OK), cost=Sum("cost_usd"), **_moments("m", expression),
        )
    )  # fmt: skip
    grouped.sort(key=lambda r: (-r["responses"], _target_label(r[keys[0]], r[keys[1]])))
    targets = []
    for row in grouped:
        wilson = stats.wilson_interval(row["passed"], row["evaluated"])
        targets.append({
            "target": _target_label(row[keys[0]], row[keys[1]]), "endpoint": row[keys[0]], "model": row[keys[1]],
            "responses": row["responses"], "errors": row["errors"], **asdict(_summary(row, "m")),
            "evaluated": row["evaluated"], "passed": row["passed"],
            "pass_rate": 100 * row["passed"] / row["evaluated"] if row["evaluated"] else None,
            "pass_rate_ci": [100 * wilson[0], 100 * wilson[1]] if wilson else None,
            "mean_latency_ms": row["latency_sum"] / row["latency_n"] if row["latency_n"] else None,
            "mean_ttft_ms": row["ttft_sum"] / row["ttft_n"] if row["ttft_n"] else None,
            "cost_usd": float(row["cost"] or 0.0),
            "cost_per_response_usd": float(row["cost"] or 0.0) / row["responses"] if row["responses"] else None,
        })  # fmt: skip
    compared = targets[:MAX_COMPARED]
    names = {(t["endpoint"], t["model"]) for t in compared}
    # Per (target, test case) means, for the paired test.
    per_case: dict = defaultdict(dict)
    for row in (rows.filter(OK, test_case__isnull=False).values(*keys, "test_case_id")
                .annotate(n=Count(expression), total=Sum(expression))):  # fmt: skip
        if row["n"] and (row[keys[0]], row[keys[1]]) in names:
            per_case[(row[keys[0]], row[keys[1]])][row["test_case_id"]] = row["total"] / row["n"]
    value_counts = None
    pairs = []
    for i, a in enumerate(compared):
        for b in compared[i + 1 :]:
            ka, kb = (a["endpoint"], a["model"]), (b["endpoint"], b["model"])
            shared = sorted(set(per_case[ka]) & set(per_case[kb]))
            if len(shared) >= 2:
                test = stats.wilcoxon_paired([per_case[ka][c] for c in shared], [per_case[kb][c] for c in shared])
            else:
                if value_counts is None:
                    value_counts = _value_counts(rows, keys, expression, names)
                va, vb = value_counts.get(ka, ([], [])), value_counts.get(kb, ([], []))
                test = stats.mann_whitney_counts(va[0], va[1], vb[0], vb[1])
            difference = a["mean"] - b["mean"] if a["mean"] is not None and b["mean"] is not None else None
            pairs.append({"a": a["target"], "b": b["target"], "difference": difference, "shared_test_cases": len(shared),
                          **asdict(test)})  # fmt: skip
    for pair, adjusted in zip(pairs, stats.holm([p["p_value"] for p in pairs]), strict=True):
        pair["p_holm"] = adjusted
        pair["significant"] = adjusted is not None and adjusted < stats.ALPHA
    note = (
        f"the {MAX_COMPARED} targets with the most responses are compared pairwise"
        if len(targets) > MAX_COMPARED
        else ""
    )
    return as_json({"metric": filters.metric, "unit": "points", "filters": filters.as_json(), "targets": targets,
                    "pairs": pairs, "note": note})  # fmt: skip


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
    total = rows.count()
    step = max(1, math.ceil(total / limit))
    if step > 1:
        rows = rows.annotate(bucket=F("id") % step).filter(bucket=0)
    columns = (*PARAMETER_NAMES, *(f"quality_{m}" for m in TEXT_METRICS), "score", "passed", "latency_ms",
               "ttft_ms", "cost_usd")  # fmt: skip
    data = list(rows.order_by("id").values_list(*columns)[:limit])
    cells = np.array(data, dtype=object).reshape(len(data), len(columns))
    cells[cells == None] = np.nan  # noqa: E711 - elementwise: NULL becomes NaN
    table = cells.astype(float)
    parameters = {name: table[:, i] for i, name in enumerate(PARAMETER_NAMES)}
    parameters = {n: v for n, v in parameters.items() if len(np.unique(v[np.isfinite(v)])) > 1}
    offset = len(PARAMETER_NAMES)
    metrics = {m: table[:, offset + i] for i, m in enumerate(TEXT_METRICS)}
    offset += len(TEXT_METRICS)
    metrics["score"] = table[:, offset] * 100
    metrics["pass_rate"] = table[:, offset + 1] * 100
    for i, name in enumerate(("latency_ms", "ttft_ms", "cost_usd"), start=offset + 2):
        metrics[name] = table[:, i]
    return {"parameters": parameters, "metrics": metrics, "n": len(data), "total": total, "step": step}


def _sample_note(data: dict) -> str:
    if data["step"] == 1:
        return f"all {data['total']:,} successful responses in the filter"
    return f"a sample of {data['n']:,} of {data['total']:,} successful responses (every {data['step']}th by id)"


def parameter_optimization(team, filters: Filters, objective: analysis.Objective) -> dict:
    data = parameter_observations(team, filters)
    result = analysis.optimize(data["parameters"], data["metrics"], objective)
    return as_json({"filters": filters.as_json(), "sample": _sample_note(data), "n": data["n"],
                    "parameters": list(data["parameters"]), **asdict(result)})  # fmt: skip


def parameter_correlation(team, filters: Filters) -> dict:
    data = parameter_observations(team, filters)
    return as_json({"filters": filters.as_json(), "sample": _sample_note(data), "n": data["n"],
                    "parameters": list(data["parameters"]),
                    "correlations": analysis.correlations(data["parameters"], data["metrics"]),
                    # The mean at each value for the chosen metric only: with a swept parameter of 100 values,
                    # every figure's table would be thousands of rows (and most of the time).
                    "effects": analysis.effects(data["parameters"], {filters.metric: data["metrics"][filters.metric]})})  # fmt: skip


def parameter_insights(team, filters: Filters, objective: analysis.Objective) -> dict:
    data = parameter_observations(team, filters)
    # Insights cite correlations with the objective, latency and cost only: test just those.
    cited = {m: v for m, v in data["metrics"].items()
             if m in (objective.quality_metric if objective.weights else objective.metric, "latency_ms", "cost_usd")}  # fmt: skip
    found = analysis.insights(data["parameters"], data["metrics"], objective=objective,
                              correlation_list=analysis.correlations(data["parameters"], cited))  # fmt: skip
    return as_json({"filters": filters.as_json(), "sample": _sample_note(data), "n": data["n"],
                    "objective": objective.name, "insights": found})  # fmt: skip


# --- regressions ----------------------------------------------------------------------------------


def _quality_regressions(team) -> list[dict]:
    """Per target (endpoint · model): its latest finished experiment against the previous one."""
    appearances: dict = defaultdict(list)
    finished = ExperimentTarget.objects.filter(
        experiment__team=team, experiment__status__in=[Experiment.Status.COMPLETED, Experiment.Status.CANCELLED]
    ).values_list("experiment_id", "experiment__name", "experiment__finished_at", "endpoint__name", "model")
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
    from apps.experiments.models import Response

    figures = {}
    for row in (
        Response.objects.filter(experiment_id__in=experiment_ids).order_by()
        .values("experiment_id", "target__endpoint__name", "target__model")
        .annotate(evaluated=Count("passed", filter=OK), passed=Count("id", filter=OK & Q(passed=True)),
                  **_moments("s", metric_expression("score")))
    ):  # fmt: skip
        figures[(row["experiment_id"], row["target__endpoint__name"], row["target__model"])] = row
    out = []
    for (endpoint, model), (latest, previous) in sorted(chosen.items()):
        now, before = figures.get((latest[1], endpoint, model)), figures.get((previous[1], endpoint, model))
        if not now or not before:
            continue
        base = {"kind": "quality", "subject": _target_label(endpoint, model), "latest": latest[2],
                "latest_id": latest[1], "previous": previous[2], "previous_id": previous[1]}  # fmt: skip
        if now["evaluated"] and before["evaluated"]:
            rate_now, rate_before = 100 * now["passed"] / now["evaluated"], 100 * before["passed"] / before["evaluated"]
            test = stats.fisher(now["passed"], now["evaluated"], before["passed"], before["evaluated"])
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


def _performance_regressions(team) -> list[dict]:
    """Per model variant × hardware × deployment × workload: the latest run against the previous one."""
    runs = (
        PerformanceRun.objects.filter(team=team, summary__isnull=False)
        .select_related("variant", "hardware", "deployment", "summary")
        .only("pk", "name", "created_at", "started_at", "concurrency", "request_rate_rps", "input_tokens_target",
              "output_tokens_target", "dataset", "variant__model_name", "variant__quantization", "hardware__name",
              "deployment__name", "summary__metrics", "summary__output_token_throughput_tps")
    )  # fmt: skip
    series: dict = defaultdict(list)
    for run in runs:
        key = (run.variant_id, run.hardware_id, run.deployment_id, run.concurrency, run.request_rate_rps,
               run.input_tokens_target, run.output_tokens_target, run.dataset)  # fmt: skip
        series[key].append(run)
    out = []
    for seen in series.values():
        if len(seen) < 2:
            continue
        seen.sort(key=lambda r: (r.started_at or r.created_at, r.pk))
        latest, previous = seen[-1], seen[-2]
        subject = latest.label + (f" · {latest.deployment}" if latest.deployment_id else "")
        base = {"kind": "performance", "subject": subject, "latest": str(latest), "latest_id": latest.pk,
                "previous": str(previous), "previous_id": previous.pk}  # fmt: skip
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


def regressions(team) -> dict:
    """Latest against previous comparable run, for quality (pass rate: Fisher exact; mean score:
    Welch) and performance (TTFT p95, TPOT, throughput: Welch on the per-request means the summaries
    store). p-values are Holm-corrected over every comparison; a regression is a significant change
    for the worse, an improvement one for the better."""
    found = _quality_regressions(team) + _performance_regressions(team)
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
                    "improvements": sum(f["status"] == "improvement" for f in found)})  # fmt: skip


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
    """Per model variant and deployment: the mean of its imported benchmark scores and its own test-case
    quality (mean evaluator score of responses from a model of that name), median TTFT p50 and output
    throughput over its performance runs, and the cost per 1M output tokens on its hardware (hourly cost ÷
    throughput). Each axis scaled 0–1 over the rows (1 = best), mixed with the weights; the Pareto front is
    over quality (benchmark score, else own quality), throughput and cost."""
    variants = {v.pk: v for v in ModelVariant.objects.filter(team=team)}
    benchmark = defaultdict(list)
    for variant_id, value in Score.objects.filter(team=team).values_list("variant_id", "value_pct"):
        benchmark[variant_id].append(value)
    own = {}
    score = metric_expression("score")
    for row in (
        responses(team, filters)
        .values("target__model")
        .annotate(n=Count(score, filter=OK), total=Sum(score, filter=OK))
    ):
        if row["n"]:
            own[row["target__model"].lower()] = (row["total"] / row["n"], row["n"])
    runs = defaultdict(list)
    for run in PerformanceRun.objects.filter(team=team, summary__isnull=False).select_related(
        "summary", "hardware", "deployment"
    ).only("variant_id", "deployment__name", "hardware__hourly_cost_usd", "summary__metrics",
           "summary__output_token_throughput_tps"):  # fmt: skip
        runs[(run.variant_id, run.deployment.name if run.deployment_id else "")].append(run)
    keys = set(runs) | {(pk, "") for pk in variants if not any(k[0] == pk for k in runs)}
    rows = []
    for variant_id, deployment in sorted(keys, key=lambda k: (str(variants[k[0]]), k[1])):
        variant, members = variants[variant_id], runs.get((variant_id, deployment), [])
        throughput = [r.summary.output_token_throughput_tps for r in members if r.summary.output_token_throughput_tps]
        ttft = [m for r in members if (m := (r.summary.metrics.get("ttft_ms") or {}).get("p50")) is not None]
        costs = [r.hardware.hourly_cost_usd / (r.summary.output_token_throughput_tps * 3600) * 1e6 for r in members
                 if r.hardware_id and r.hardware.hourly_cost_usd and r.summary.output_token_throughput_tps]  # fmt: skip
        own_quality = own.get(variant.model_name.lower())
        bench = benchmark.get(variant_id)
        rows.append({
            "variant": str(variant), "variant_id": variant_id, "model": variant.model_name,
            "quantization": variant.quantization, "deployment": deployment, "runs": len(members),
            "benchmark_score_pct": float(np.mean(bench)) if bench else None, "benchmarks": len(bench or []),
            "own_quality": own_quality[0] if own_quality else None, "own_quality_n": own_quality[1] if own_quality else 0,
            "ttft_p50_ms": _median(ttft), "output_tps": _median(throughput),
            "cost_per_1m_output_usd": _median(costs),
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
                    "note": "a row missing a weighted axis is not ranked"})  # fmt: skip
