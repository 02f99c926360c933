"""Repeated trials of a load sweep: the t interval of each level's figures against hand-computed values, cut
at 0; Welch's comparison; and the same mean and interval on the sweep page, in the API and in the exports."""

import csv
import io
import json
import math
import re

import pytest
from django.test import Client
from django.urls import reverse
from openpyxl import load_workbook
from scipy import stats

from apps.batches.models import LoadSweep, LoadSweepStep, Status
from apps.batches.selectors import sweep_trials
from apps.batches.trials import NO_TRIAL, NOT_MEASURED, ONE_TRIAL, compare_trials, t_interval
from apps.hardware.parsed import ParsedRun
from apps.hardware.services import RunTarget, run_store
from apps.providers.models import ProviderEndpoint
from apps.providers.samples import ParsedSample
from llmbench.humanize import number_text
from tests.factories import HardwareProfileFactory, ModelVariantFactory

T_975_DF2 = 4.302652729749464  # Student t, 97.5th percentile, 2 degrees of freedom (printed tables: 4.303)


# --- the maths ---------------------------------------------------------------------------------------------


def test_the_interval_of_three_trials_is_student_t_with_two_degrees_of_freedom():
    """100, 110, 120: mean 110, sd 10, 110 ± 4.3027 · 10/√3."""
    result = t_interval([100.0, 110.0, 120.0])
    half = T_975_DF2 * 10 / math.sqrt(3)
    assert (result.k, result.mean, result.sd) == (3, 110.0, 10.0)
    assert result.low == pytest.approx(110 - half, rel=1e-12) == pytest.approx(85.15862288, rel=1e-9)
    assert result.high == pytest.approx(110 + half, rel=1e-12) and not result.clipped and result.note == ""


def test_two_trials_use_one_degree_of_freedom():
    result = t_interval([10.0, 14.0], floor=None)  # mean 12, sd 2√2, t(0.975, 1) = 12.7062
    half = 12.706204736174707 * (2 * math.sqrt(2)) / math.sqrt(2)
    assert result.low == pytest.approx(12 - half) and result.high == pytest.approx(12 + half)
    assert t_interval([10.0, 14.0]).low == 0.0  # 12 − 25.4 would be below 0: cut there


def test_an_interval_that_would_go_below_zero_is_cut_at_zero_and_says_so():
    """5, 50, 95 ms: the t interval is about −62 to 162 ms; a latency cannot be negative."""
    result = t_interval([5.0, 50.0, 95.0])
    assert 50 - T_975_DF2 * 45 / math.sqrt(3) < 0
    assert result.low == 0.0 and result.clipped
    assert result.high == pytest.approx(50 + T_975_DF2 * 45 / math.sqrt(3), rel=1e-12)


@pytest.mark.parametrize(
    ("values", "note"),
    [([], NO_TRIAL), ([42.0], ONE_TRIAL), ([7.0, 7.0, 7.0], "no spread: all 3 trials equal"),
     ([3.0, None, float("nan")], ONE_TRIAL)],
)  # fmt: skip
def test_no_interval_without_two_different_trials(values, note):
    result = t_interval(values)
    assert result.low is None and result.high is None and result.note == note


def test_intervals_of_many_groups_at_once_match_scipy_one_by_one():
    """The page's intervals come from one vectorized call; each equals scipy.stats.t.interval on its own group."""
    from apps.batches.trials import t_intervals

    groups = [[1.0, 2.0], [3.0, 5.0, 9.0], [10.0, 11.0, 12.0, 20.0], [4.0], [], [6.0, 6.0]]
    results = t_intervals(groups, floor=None)
    for values, result in zip(groups[:3], results, strict=False):
        n = len(values)
        mean, sd = sum(values) / n, stats.tstd(values)
        low, high = stats.t.interval(0.95, n - 1, loc=mean, scale=sd / math.sqrt(n))
        assert (result.low, result.high) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))
    assert [r.note for r in results[3:]] == [ONE_TRIAL, NO_TRIAL, "no spread: all 2 trials equal"]


def test_compare_trials_is_welchs_test_with_satterthwaite_degrees_of_freedom():
    """a = 10, 12, 14 (var 4) and b = 7, 8, 9 (var 1): se² = 4/3 + 1/3 = 5/3, t = 4/√(5/3) = 3.0984,
    df = (5/3)² / ((4/3)²/2 + (1/3)²/2) = 50/17 = 2.9412; the interval is 4 ± t(0.975, 50/17)·√(5/3)."""
    result = compare_trials([10, 12, 14], [7, 8, 9], label_a="vLLM", label_b="TGI", unit="req/s")
    se = math.sqrt(5 / 3)
    df = 50 / 17
    assert (result["mean_a"], result["mean_b"], result["difference"]) == (12.0, 8.0, 4.0)
    assert result["df"] == pytest.approx(df, rel=1e-12) and result["t"] == pytest.approx(4 / se, rel=1e-12)
    assert result["t"] == pytest.approx(3.0983866769659336)
    assert result["p_value"] == pytest.approx(2 * stats.t.sf(4 / se, df), rel=1e-9)
    half = stats.t.ppf(0.975, df) * se
    assert (result["ci_low"], result["ci_high"]) == (pytest.approx(4 - half), pytest.approx(4 + half))
    assert result["ci_low"] < 0 < result["ci_high"] and result["p_value"] > 0.05 and not result["significant"]
    assert result["verdict"].startswith("No significant difference between vLLM and TGI")
    assert "4 req/s" in result["verdict"] and "p = 0.055" in result["verdict"]


def test_compare_trials_names_the_higher_side_when_significant():
    """a = 20, 21, 22 and b = 10, 11, 12: var 1 each, se = √(2/3), t = 10/se = 12.247, df = 4 exactly."""
    result = compare_trials([20, 21, 22], [10, 11, 12], label_a="H100", label_b="A100", unit="req/s")
    se = math.sqrt(2 / 3)
    assert result["df"] == pytest.approx(4.0) and result["t"] == pytest.approx(10 / se)
    assert result["p_value"] == pytest.approx(2 * stats.t.sf(10 / se, 4), rel=1e-9) and result["p_value"] < 0.001
    assert result["ci_low"] == pytest.approx(10 - 2.7764451051977987 * se)  # t(0.975, 4) = 2.7764
    assert result["significant"] and result["verdict"].startswith("H100 is higher than A100 by 10 req/s")
    lower = compare_trials([10, 11, 12], [20, 21, 22])
    assert lower["difference"] == -10 and lower["verdict"].startswith("A is lower than B by 10")


def test_compare_trials_refuses_what_cannot_be_tested():
    few = compare_trials([5.0], [4.0, 6.0])
    assert few["p_value"] is None and "each side needs 2 or more (A has 1, B has 2)" in few["verdict"]
    flat = compare_trials([5.0, 5.0], [3.0, 3.0])
    assert flat["p_value"] is None and flat["difference"] == 2.0 and "no spread" in flat["verdict"]


def test_a_figure_missing_from_finished_runs_is_not_measured_rather_than_not_run():
    """Runs without token timings have no ITL: their level says so, and a level that never ran says that."""
    from types import SimpleNamespace

    from apps.batches.trials import level_trials

    def step(index, level, trial, status, ttft=None):
        metrics = {"ttft_ms": {"p50": ttft, "p95": ttft, "p99": ttft}}
        summary = SimpleNamespace(metrics=metrics, stat=lambda m, k: (metrics.get(m) or {}).get(k),
                                  request_throughput_rps=1.0, output_token_throughput_tps=10.0, goodput_rps=None)  # fmt: skip
        run = SimpleNamespace(summary=summary) if ttft is not None else None
        return SimpleNamespace(index=index, level=level, trial=trial, status=status, run_id=index + 1 if run else None,
                               run=run)  # fmt: skip

    block = level_trials([step(0, 2.0, 0, Status.COMPLETED, 40.0), step(1, 2.0, 1, Status.COMPLETED, 60.0),
                          step(2, 8.0, 0, Status.PENDING), step(3, 8.0, 1, Status.PENDING)])  # fmt: skip
    ran, never = block["levels"]
    assert ran["figures"]["ttft_p50_ms"]["mean"] == 50.0 and ran["figures"]["itl_p95_ms"]["note"] == NOT_MEASURED
    assert never["figures"]["itl_p95_ms"]["note"] == never["figures"]["ttft_p50_ms"]["note"] == NO_TRIAL
    assert "goodput_rps" not in ran["figures"] and block["repeated"]


# --- a sweep with 3 trials at 2 levels (and a level that finished one trial) --------------------------------

# Per level, per trial: (TTFT of every request in ms, the run's duration in s). Every request of a run has the
# same TTFT, so its p50/p95/p99 are that TTFT; 10 requests in the duration make the request throughput.
TRIALS = {1.0: [(100.0, 10.0), (110.0, 8.0), (120.0, 5.0)], 4.0: [(5.0, 10.0), (50.0, 10.0), (95.0, 10.0)]}
LAST_LEVEL = 16.0  # trial 1 completed, trial 2 cancelled (cut short: not counted), trial 3 never ran


def _run(team, sweep, level: float, ttft_ms: float, duration_s: float):
    samples = [ParsedSample(index=i, ttft_ms=ttft_ms, e2e_ms=ttft_ms + 100, input_tokens=20, output_tokens=11,
                            itl_ms=[10.0] * 10) for i in range(10)]  # fmt: skip
    parsed = ParsedRun(source_format="llmbench_json", concurrency=int(level), duration_s=duration_s, samples=samples,
                       name=f"{sweep.name} c={level:g}")  # fmt: skip
    return run_store(team=team, parsed=parsed, target=RunTarget(sweep.variant, sweep.hardware, None))


def make_trial_sweep(team, *, name="trials", trials=3) -> LoadSweep:
    endpoint = ProviderEndpoint.objects.create(team=team, name=f"sim-{name}", kind="sim", model_names=["sim-small"])
    levels = [*TRIALS, LAST_LEVEL]
    sweep = LoadSweep.objects.create(
        team=team, name=name, endpoint=endpoint, model="sim-small", variant=ModelVariantFactory(team=team),
        hardware=HardwareProfileFactory(team=team), levels=levels, step_request_count=10, trials=trials,
        status=Status.COMPLETED,
    )  # fmt: skip
    index = 0
    for level in levels:
        for trial in range(trials):
            step = LoadSweepStep(sweep=sweep, index=index, level=level, trial=trial, status=Status.PENDING)
            if level in TRIALS and trial < len(TRIALS[level]):
                step.status, step.run = Status.COMPLETED, _run(team, sweep, level, *TRIALS[level][trial])
            elif level == LAST_LEVEL and trial < 2:
                step.status = Status.COMPLETED if trial == 0 else Status.CANCELLED
                step.run = _run(team, sweep, level, 300.0 if trial == 0 else 900.0, 10.0)
            step.save()
            index += 1
    return sweep


def _level(block: dict, level: float) -> dict:
    return next(entry for entry in block["levels"] if entry["level"] == level)


pytestmark_db = pytest.mark.django_db


@pytestmark_db
class TestSweepTrials:
    def test_each_level_gets_the_t_interval_of_its_trials(self, team):
        block = sweep_trials(make_trial_sweep(team))
        assert block["repeated"] and [e["level"] for e in block["levels"]] == [1.0, 4.0, 16.0]
        assert [f["key"] for f in block["figures"]] == [
            "ttft_p50_ms", "ttft_p95_ms", "ttft_p99_ms", "tpot_p95_ms", "itl_p95_ms", "e2e_p95_ms",
            "request_throughput_rps", "output_tokens_per_s",
        ]  # fmt: skip  # no goodput: no SLO is set on the runs
        first = _level(block, 1.0)
        for key in ("ttft_p50_ms", "ttft_p95_ms", "ttft_p99_ms"):
            ttft = first["figures"][key]
            assert (ttft["k"], ttft["mean"], ttft["sd"]) == (3, 110.0, 10.0)
            assert ttft["low"] == pytest.approx(110 - T_975_DF2 * 10 / math.sqrt(3))
            assert [t["value"] for t in ttft["trials"]] == [100.0, 110.0, 120.0]
            assert [t["trial"] for t in ttft["trials"]] == [0, 1, 2]
        rps = first["figures"]["request_throughput_rps"]  # 10 requests in 10, 8 and 5 s
        assert [t["value"] for t in rps["trials"]] == pytest.approx([1.0, 1.25, 2.0])
        assert rps["mean"] == pytest.approx(4.25 / 3)
        assert rps["low"] == pytest.approx(4.25 / 3 - T_975_DF2 * rps["sd"] / math.sqrt(3))
        e2e = first["figures"]["e2e_p95_ms"]  # TTFT + 100 ms
        assert e2e["mean"] == pytest.approx(210.0) and e2e["sd"] == pytest.approx(10.0)
        assert first["figures"]["tpot_p95_ms"]["note"] == "no spread: all 3 trials equal"  # 10 ms

    def test_a_latency_interval_never_goes_below_zero(self, team):
        block = sweep_trials(make_trial_sweep(team))
        ttft = _level(block, 4.0)["figures"]["ttft_p50_ms"]
        assert ttft["low"] == 0.0 and ttft["clipped"] and ttft["mean"] == 50.0
        for entry in block["levels"]:
            for figures in entry["figures"].values():
                assert figures["low"] is None or figures["low"] >= 0

    def test_a_level_with_one_finished_trial_says_so_and_a_cancelled_trial_is_left_out(self, team):
        last = _level(sweep_trials(make_trial_sweep(team)), LAST_LEVEL)
        assert (last["trials_planned"], last["trials_finished"]) == (3, 1)
        ttft = last["figures"]["ttft_p50_ms"]
        assert (ttft["k"], ttft["mean"], ttft["low"], ttft["note"]) == (1, 300.0, None, "one trial")

    def test_goodput_is_listed_once_an_slo_is_set(self, team):
        from apps.hardware.services import run_update_slo

        sweep = make_trial_sweep(team)
        for step in sweep.steps.filter(level=1.0):
            run_update_slo(run=step.run, ttft_ms=105.0, tpot_ms=None, e2e_ms=None)
        block = sweep_trials(sweep)
        goodput = _level(block, 1.0)["figures"]["goodput_rps"]
        assert block["figures"][-1] == {"key": "goodput_rps", "label": "Goodput", "unit": "req/s", "digits": 2}
        assert [t["value"] for t in goodput["trials"]] == pytest.approx([1.0, 0.0, 0.0])  # only trial 1 meets it
        assert _level(block, 4.0)["figures"]["goodput_rps"]["note"] == NOT_MEASURED  # no SLO on its runs

    def test_a_sweep_of_one_trial_per_level_is_not_repeated(self, team):
        block = sweep_trials(make_trial_sweep(team, trials=1))
        assert not block["repeated"] and _level(block, 1.0)["figures"]["ttft_p50_ms"]["note"] == ONE_TRIAL


# --- the same numbers on the page, in the API and in the exports --------------------------------------------


def _cell(content: str, level: float, key: str) -> str:
    row = re.search(rf'<tr data-level="{level}">(.*?)</tr>', content, re.S).group(1)
    return re.search(rf'<td data-figure="{key}">(.*?)</td>', row, re.S).group(1)


def _page(client, sweep) -> str:
    response = client.get(reverse("batches:sweep", args=[sweep.pk]))
    assert response.status_code == 200
    return response.content.decode()


@pytestmark_db
class TestSameNumbersEverywhere:
    def test_the_page_shows_the_mean_and_interval_of_each_level(self, member_client, team):
        sweep = make_trial_sweep(team)
        block = sweep_trials(sweep)
        content = _page(member_client, sweep)
        assert "Across trials" in content
        for level in TRIALS:
            for figure in block["figures"]:
                figures = _level(block, level)["figures"][figure["key"]]
                cell = _cell(content, level, figure["key"])
                digits = figure["digits"]
                assert f'<strong class="trial-mean">{number_text(figures["mean"], digits)}</strong>' in cell
                if figures["low"] is not None:
                    assert f"{number_text(figures['low'], digits)}–{number_text(figures['high'], digits)}" in cell
                    assert ("(cut at 0)" in cell) == figures["clipped"]
                else:
                    assert figures["note"] in cell
        assert "85.2–134.8" in _cell(content, 1.0, "ttft_p50_ms")
        assert "0–161.8 (cut at 0)" in _cell(content, 4.0, "ttft_p50_ms")
        one = _cell(content, LAST_LEVEL, "ttft_p50_ms")
        assert "300.0" in one and "one trial" in one
        assert re.search(rf'<tr data-level="{LAST_LEVEL}">\s*<td>16</td><td>1 of 3</td>', content)

    def test_the_charts_draw_every_trial_faintly_and_an_error_bar_per_interval(self, member_client, team):
        content = _page(member_client, make_trial_sweep(team))
        chart = re.search(r'<figure class="chart-figure" data-figure="ttft_p50_ms">(.*?)</figure>', content, re.S)
        chart = chart.group(1)
        assert chart.count('class="trial-dot"') == 3 + 3 + 1  # every finished trial, the cancelled one left out
        assert chart.count('class="error-bar"') == 2 and chart.count('class="trial-mean-dot"') == 3
        assert "Trial 2: 110.0 ms" in chart and "Mean 300.0, one trial" in chart
        coordinates = [float(v) for v in re.findall(r'c?y[12]?="(-?[0-9.]+)"', chart)]
        assert coordinates and min(coordinates) >= 0  # nothing drawn above the chart (no negative y)
        assert len(re.search(r'class="mean-line" points="([^"]*)"', chart).group(1).split()) == 3  # a mean per level

    def test_the_page_reads_the_trials_in_as_many_queries_for_more_trials(self, member_client, team):
        """The figures come with their steps (select_related), so more trials do not mean more queries."""
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        counts = []
        for trials in (2, 3):
            sweep = make_trial_sweep(team, name=f"q{trials}", trials=trials)
            with CaptureQueriesContext(connection) as queries:
                _page(member_client, sweep)
            counts.append(len(queries))
        assert counts[0] == counts[1]

    def test_a_sweep_of_one_trial_per_level_has_no_trials_section(self, member_client, team):
        content = _page(member_client, make_trial_sweep(team, trials=1))
        assert "Across trials" not in content and 'id="trials-table"' not in content

    def test_the_api_payload_has_the_same_figures_as_the_page(self, member_api, team):
        sweep = make_trial_sweep(team)
        state = member_api.get(f"/api/v1/sweeps/{sweep.pk}").json()["state"]
        assert state["trials"] == json.loads(json.dumps(sweep_trials(sweep)))
        ttft = _level(state["trials"], 1.0)["figures"]["ttft_p50_ms"]
        assert ttft["mean"] == 110.0 and ttft["low"] == pytest.approx(85.15862288)
        assert _level(state["trials"], 4.0)["figures"]["ttft_p50_ms"]["low"] == 0.0

    def test_the_csv_and_excel_have_the_same_means_and_intervals(self, team):
        from apps.batches.exports import sweep_export

        sweep = make_trial_sweep(team)
        block = sweep_trials(sweep)
        expected = {
            (entry["level"], key): figures for entry in block["levels"] for key, figures in entry["figures"].items()
        }
        body = b"".join(sweep_export(sweep=sweep, kind="csv").streaming_content).decode("utf-8-sig")
        rows = list(csv.DictReader(io.StringIO(body)))
        assert len(rows) == len(expected) == 3 * 8
        for row in rows:
            figures = expected[(float(row["level"]), row["figure"])]
            assert int(row["trials"]) == figures["k"] and row["note"] == figures["note"]
            for column, key in (("mean", "mean"), ("sd", "sd"), ("ci95_low", "low"), ("ci95_high", "high")):
                assert (float(row[column]) if row[column] else None) == figures[key], (row, column)
        clipped = next(r for r in rows if r["level"] == "4.0" and r["figure"] == "ttft_p50_ms")
        assert clipped["ci95_low"] in ("0", "0.0") and clipped["clipped_at_0"] in ("True", "true", "yes")

        workbook = load_workbook(io.BytesIO(sweep_export(sweep=sweep, kind="xlsx").content), read_only=True)
        sheet = list(workbook["levels"].iter_rows(values_only=True))
        header, data = sheet[0], sheet[1:]
        assert len(data) == len(expected)
        for values in data:
            row = dict(zip(header, values, strict=True))
            figures = expected[(float(row["level"]), row["figure"])]
            assert (row["mean"], row["ci95_low"], row["ci95_high"]) == (figures["mean"], figures["low"],
                                                                        figures["high"])  # fmt: skip
        steps = list(workbook["steps"].iter_rows(values_only=True))
        assert len(steps) == 1 + 9 and steps[1][:3] == (1, 1, 1) and steps[1][5] == 100.0

    def test_the_json_export_has_the_levels_and_every_step(self, team):
        from apps.batches.exports import sweep_export

        sweep = make_trial_sweep(team)
        data = json.loads(b"".join(sweep_export(sweep=sweep, kind="json").streaming_content))
        levels = data["tables"]["levels"] if isinstance(data["tables"], dict) else None
        assert levels is not None and len(levels) == 24 and len(data["tables"]["steps"]) == 9
        ttft = next(r for r in levels if r["level"] == 1.0 and r["figure"] == "ttft_p50_ms")
        assert ttft["mean"] == 110.0 and ttft["ci95_low"] == pytest.approx(85.15862288)


@pytestmark_db
class TestExportView:
    """The download URLs: anyone of the team may read them; other teams get 404, strangers the login page."""

    def test_a_viewer_downloads_the_csv(self, viewer_client, team):
        sweep = make_trial_sweep(team)
        response = viewer_client.get(reverse("batches:sweep-export-csv", args=[sweep.pk]))
        assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
        assert f'filename="sweep-{sweep.pk}.csv"' in response["Content-Disposition"]
        assert 'id="download-xlsx"' in viewer_client.get(reverse("batches:sweep", args=[sweep.pk])).content.decode()

    def test_anonymous_is_sent_to_log_in_and_another_team_gets_404(self, member_client, other_team):
        sweep = make_trial_sweep(other_team)
        url = reverse("batches:sweep-export-xlsx", args=[sweep.pk])
        assert member_client.get(url).status_code == 404
        anonymous = Client().get(url)  # the `client` fixture is the member's, signed in
        assert anonymous.status_code == 302 and "login" in anonymous["Location"]

    def test_writing_is_refused_and_an_unknown_format_is_404(self, member_client, team):
        sweep = make_trial_sweep(team)
        assert member_client.post(reverse("batches:sweep-export-json", args=[sweep.pk])).status_code == 405
        url = reverse("batches:sweep-export-json", args=[sweep.pk]).replace("export.json", "export.pdf")
        assert member_client.get(url).status_code == 404
