"""Gate criteria: parsed strictly (each problem names the figure, operator, number or unit) and judged on figures."""

import pytest
from django.core.exceptions import ValidationError

from apps.gates.criteria import judge_regression, judge_threshold, parse_criteria, parse_one
from tests.gates.conftest import comparison, figure


def problems(texts, kind="experiment", available=None) -> list[str]:
    with pytest.raises(ValidationError) as excinfo:
        parse_criteria(texts, kind=kind, available=available)
    return excinfo.value.message_dict["criteria"]


def test_thresholds_parse_with_operators_units_and_levels():
    """>=, ≤, <, units (ms, s, %, req/s) and a load sweep's level suffix are understood."""
    c = parse_one("pass_rate >= 0.9", kind="experiment")
    assert (c.kind, c.figure, c.operator, c.threshold, c.unit) == ("threshold", "pass_rate", ">=", 0.9, "")
    c = parse_one("p95_ttft_ms ≤ 400 ms", kind="load_sweep")
    assert (c.figure, c.operator, c.threshold, c.unit) == ("p95_ttft_ms", "<=", 400.0, "ms")
    assert parse_one("p95_ttft_ms<=0.4s", kind="load_sweep").threshold == 400.0
    assert parse_one("p95_ttft_ms@8 < 300", kind="load_sweep").figure == "p95_ttft_ms@8"
    assert parse_one("error_rate < 2%", kind="experiment").unit == "%"
    assert parse_one("throughput_rps > 10 req/s", kind="load_sweep").threshold == 10.0
    assert parse_one("  Pass_Rate   >=   .9 ", kind="experiment").text == "Pass_Rate >= .9"


def test_an_unknown_figure_is_named_with_the_figures_there_are():
    """The message names the bad figure and lists the run's figures."""
    [message] = problems(["pass_rat >= 0.9"])
    assert "unknown figure “pass_rat”" in message and "pass_rate" in message
    [message] = problems(["accuracy >= 0.9"], available={"pass_rate", "mean_score"})
    assert "“accuracy”" in message and "mean_score, pass_rate" in message


def test_a_bad_operator_number_or_unit_is_named():
    """== / => / a missing operator / not a number / a unit that does not fit: each problem says which."""
    found = problems(["pass_rate == 0.9", "pass_rate => 0.9", "pass_rate 0.9", "pass_rate >= high",
                      "pass_rate >= 0.9 ms", "p95_ttft_ms <= 4 parsecs"], kind="experiment",
                     available={"pass_rate", "p95_ttft_ms"})  # fmt: skip
    assert "unknown operator “==”" in found[0] and "unknown operator “=>”" in found[1]
    assert "no comparison operator" in found[2] and "“high” is not a number" in found[3]
    assert "the unit “ms” does not fit the figure “pass_rate”" in found[4] and "unknown unit “parsecs”" in found[5]


def test_levels_are_a_load_sweeps_only():
    """pass_rate@8 is refused for an experiment; any level of a known load-sweep figure is accepted."""
    assert "only a load sweep" in problems(["pass_rate@8 >= 0.9"])[0]
    parse_criteria(["p95_ttft_ms@16 <= 400"], kind="load_sweep")


def test_regression_criteria_parse_with_figures_and_significance():
    """“no significant regression at p < 0.01 in …” with its figures; a bad level or figure is named."""
    c = parse_one("no significant regression at p < 0.01", kind="experiment")
    assert (c.kind, c.alpha, c.figures) == ("regression", 0.01, ())
    c = parse_one("No regression in p95_ttft_ms, throughput_rps at p < 0.05", kind="load_sweep")
    assert (c.figures, c.alpha) == (("p95_ttft_ms", "throughput_rps"), 0.05)
    assert parse_one("no significant regression", kind="benchmark_run").alpha is None
    found = problems(["no significant regression at p < 2", "no regression in speed", "no problems please"])
    assert "between 0 and 1" in found[0] and "unknown figure “speed”" in found[1] and "not understood" in found[2]


def test_criteria_must_be_a_non_empty_list_of_texts():
    """No criteria, too many or a non-text one are refused under “criteria”."""
    assert "at least one" in problems([])[0]
    assert "At most 20" in problems(["pass_rate >= 0.1"] * 21)[0]
    assert "is a text" in problems([3])[0]
    assert [c.figure for c in parse_criteria("pass_rate >= 0.9\n\nmean_score >= 0.5", kind="experiment")] == [
        "pass_rate", "mean_score"]  # fmt: skip


def test_a_threshold_passes_on_the_figure_and_reports_its_interval():
    """The figure decides; the interval is reported with whether all of it meets the threshold."""
    figures = {"pass_rate": figure("pass_rate", 0.93, low=0.88, high=0.96)}
    result = judge_threshold(parse_one("pass_rate >= 0.9", kind="experiment"), figures)
    assert result["passed"] and result["value"] == 0.93 and result["interval"] == [0.88, 0.96]
    assert result["interval_clears"] is False and "does not clear" in result["detail"]
    result = judge_threshold(parse_one("pass_rate >= 0.95", kind="experiment"), figures)
    assert not result["passed"] and "not met" in result["detail"]


def test_percent_thresholds_compare_with_shares_and_a_missing_figure_fails():
    """“2%” is 0.02 for a share; a figure without a value fails the criterion, saying so."""
    figures = {"error_rate": figure("error_rate", 0.01), "mean_score": figure("mean_score", None)}
    assert judge_threshold(parse_one("error_rate < 2%", kind="experiment"), figures)["passed"]
    result = judge_threshold(parse_one("mean_score >= 0.5", kind="experiment"), figures)
    assert not result["passed"] and "no data" in result["detail"]
    result = judge_threshold(parse_one("pass_rate >= 0.5", kind="experiment"), figures)
    assert not result["passed"] and "no such figure" in result["detail"]


def test_a_regression_fails_the_criterion_with_its_test_and_p_value():
    """A figure called a regression fails it and is named with baseline, current, test and p; others pass."""
    criterion = parse_one("no significant regression", kind="load_sweep")
    rows = [comparison("p95_ttft_ms", 300.0, 420.0, verdict="regression", p=0.001),
            comparison("throughput_rps", 10.0, 10.1, unit="req/s")]  # fmt: skip
    result = judge_regression(criterion, rows, alpha=0.05)
    assert not result["passed"] and result["p_value"] == 0.001 and result["test"] == "Mann-Whitney U"
    assert "p95 ttft ms 300 → 420 ms" in result["detail"] and len(result["comparisons"]) == 2
    limited = parse_one("no regression in throughput_rps", kind="load_sweep")
    assert judge_regression(limited, rows, alpha=0.05)["passed"]
    nothing = judge_regression(criterion, [comparison("p95_ttft_ms", None, 3.0, verdict="no data", p=None)], alpha=0.05)
    assert not nothing["passed"] and "Nothing could be compared" in nothing["detail"]
