"""Prediction: least squares of log(y) with a 95% prediction interval mapped back with exp(), checked
against numpy/scipy; intervals that stay positive on adversarial data; honest refusals."""

import numpy as np
import pytest
from scipy import stats

from apps.hardware.modeling import (
    MIN_RUNS,
    NO_INTERVAL,
    NotEnoughData,
    log_linear_fit,
    modeling_configurations,
    predict,
)
from apps.hardware.parsed import ParsedRun, ReportedSummary
from apps.hardware.services import RunTarget, run_store
from tests.factories import HardwareProfileFactory, ModelVariantFactory

pytestmark = pytest.mark.django_db

CONFIGS = [(256, 128, 1), (512, 128, 4), (1024, 256, 8), (256, 256, 16), (512, 128, 32), (1024, 256, 64), (768, 64, 12)]


def ttft(inputs, outputs, conc):
    return 20 + 0.05 * inputs + 2.0 * conc


@pytest.fixture
def setup(team):
    variant, hardware = ModelVariantFactory(team=team), HardwareProfileFactory(team=team)
    rng = np.random.default_rng(5)
    for inputs, outputs, conc in CONFIGS:
        reported = ReportedSummary(
            metrics={
                "ttft_ms": {"mean": ttft(inputs, outputs, conc) + rng.normal(0, 3)},
                "tpot_ms": {"mean": 8 + 0.3 * conc + rng.normal(0, 0.2)},
                "e2e_ms": {"mean": ttft(inputs, outputs, conc) + outputs * (8 + 0.3 * conc)},
                "input_tokens": {"mean": inputs},
                "output_tokens": {"mean": outputs},
            },
            output_token_throughput_tps=conc * 100 / (1 + conc / 50),
        )
        parsed = ParsedRun(source_format="seed_csv", concurrency=conc, reported=reported)
        run_store(team=team, parsed=parsed, target=RunTarget(variant, hardware, None))
    return variant, hardware


def test_the_prediction_and_interval_are_least_squares_of_log_y_mapped_back(team, setup):
    """TTFT: exp() of the OLS prediction of log(TTFT) and of its t-based 95% prediction interval."""
    variant, hardware = setup
    result = predict(team=team, variant_id=variant.pk, hardware_id=hardware.pk, input_tokens=600, output_tokens=128,
                     concurrency=10)  # fmt: skip
    ttft_prediction = next(p for p in result.predictions if p.target == "ttft_ms")

    from apps.hardware.models import RunSummary

    summaries = RunSummary.objects.filter(run__variant=variant).order_by("run_id")
    x = np.array([[1, s.metrics["input_tokens"]["mean"], s.metrics["output_tokens"]["mean"], s.run.concurrency]
                  for s in summaries], dtype=float)  # fmt: skip
    log_y = np.log([s.metrics["ttft_ms"]["mean"] for s in summaries])
    beta = np.linalg.lstsq(x, log_y, rcond=None)[0]
    x0 = np.array([1, 600, 128, 10.0])
    dof = len(log_y) - 4
    s2 = ((log_y - x @ beta) ** 2).sum() / dof
    half = stats.t.ppf(0.975, dof) * np.sqrt(s2 * (1 + x0 @ np.linalg.inv(x.T @ x) @ x0))
    assert ttft_prediction.value == pytest.approx(np.exp(x0 @ beta))
    assert ttft_prediction.lower == pytest.approx(np.exp(x0 @ beta - half))
    assert ttft_prediction.upper == pytest.approx(np.exp(x0 @ beta + half))
    assert ttft_prediction.lower < ttft(600, 128, 10) < ttft_prediction.upper
    assert ttft_prediction.r_squared > 0.9
    assert result.extrapolation == [] and result.confidence_label in {"high", "medium"}


def test_the_log_scale_interval_matches_scipy_linregress_with_one_feature():
    """One feature: the interval equals the textbook one built from scipy.stats.linregress and scipy.stats.t."""
    rng = np.random.default_rng(3)
    x = np.array([1, 2, 4, 8, 16, 32, 64], dtype=float)
    y = 40 * np.exp(0.03 * x) * rng.lognormal(0, 0.1, x.size)
    fit = log_linear_fit(np.column_stack([np.ones_like(x), x]), y, np.array([1.0, 24.0]))

    line = stats.linregress(x, np.log(y))
    n = x.size
    residuals = np.log(y) - (line.intercept + line.slope * x)
    s = np.sqrt((residuals**2).sum() / (n - 2))
    se = s * np.sqrt(1 + 1 / n + (24 - x.mean()) ** 2 / ((x - x.mean()) ** 2).sum())
    centre = line.intercept + line.slope * 24
    t = stats.t.ppf(0.975, n - 2)
    assert fit.value == pytest.approx(np.exp(centre))
    assert (fit.lower, fit.upper) == (pytest.approx(np.exp(centre - t * se)), pytest.approx(np.exp(centre + t * se)))
    assert fit.r_squared == pytest.approx(line.rvalue**2)


def test_intervals_for_positive_figures_are_positive_where_a_straight_line_goes_negative(team):
    """Throughput that falls steeply with concurrency: a linear fit's interval went below zero, this one stays in (0, ∞)."""
    variant, hardware = ModelVariantFactory(team=team), HardwareProfileFactory(team=team)
    for conc, e2e in ((1, 4300.0), (2, 2100.0), (4, 900.0), (8, 420.0), (16, 160.0), (32, 60.0), (48, 22.0)):
        reported = ReportedSummary(
            metrics={"e2e_ms": {"mean": e2e}, "input_tokens": {"mean": 512}, "output_tokens": {"mean": 128}},
            output_token_throughput_tps=3000.0 / conc,
        )
        run_store(team=team, parsed=ParsedRun(source_format="x", concurrency=conc, reported=reported),
                  target=RunTarget(variant, hardware, None))  # fmt: skip
    x = np.array([1, 2, 4, 8, 16, 32, 48], dtype=float)
    linear = stats.linregress(x, [4300.0, 2100.0, 900.0, 420.0, 160.0, 60.0, 22.0])
    assert linear.intercept + linear.slope * 40 < 0  # what the straight line said
    result = predict(team=team, variant_id=variant.pk, hardware_id=hardware.pk, input_tokens=512, output_tokens=128,
                     concurrency=40)  # fmt: skip
    for prediction in result.predictions:
        assert 0 < prediction.lower < prediction.value < prediction.upper < np.inf, prediction


@pytest.mark.parametrize(
    "y",
    [
        pytest.param([120.0, 80.0], id="n=2"),
        pytest.param([50.0, 50.0, 50.0, 50.0, 50.0, 50.0], id="all equal"),
        pytest.param([50.0, 52.0, 49.0, 51.0, 50.0, 5e6], id="one outlier"),
        pytest.param([50.0, 52.0, 49.0, 51.0, 50.0, 1e300], id="an outlier near the float limit"),
        pytest.param([0.0, 1e-300, 3.0, 2.0, 1.0, 4.0], id="zero and tiny values"),
    ],
)
def test_no_interval_leaves_zero_to_infinity_on_adversarial_data(y):
    """n = 2, all equal, one outlier: no prediction, no interval, or one strictly inside (0, ∞); never zero-width."""
    x = np.arange(1, len(y) + 1, dtype=float)
    design = np.column_stack([np.ones_like(x), x])
    fit = log_linear_fit(design, np.array(y), np.array([1.0, 3.5]))
    if len(y) < 3:
        assert fit is None
        return
    assert fit is not None and 0 < fit.value < np.inf
    if fit.lower is None:
        assert fit.upper is None
    else:
        assert 0 < fit.lower < fit.value < fit.upper < np.inf


def test_all_equal_figures_say_not_enough_data_for_an_interval(team):
    """Six runs with the same TPOT give its value and "not enough data", never a zero-width interval."""
    variant, hardware = ModelVariantFactory(team=team), HardwareProfileFactory(team=team)
    for conc in (1, 2, 4, 8, 16, 32):
        reported = ReportedSummary(metrics={"ttft_ms": {"mean": 30 + conc * 1.7 + (conc % 3)}, "tpot_ms": {"mean": 9.0},
                                            "input_tokens": {"mean": 512}, "output_tokens": {"mean": 128}})  # fmt: skip
        run_store(team=team, parsed=ParsedRun(source_format="x", concurrency=conc, reported=reported),
                  target=RunTarget(variant, hardware, None))  # fmt: skip
    result = predict(team=team, variant_id=variant.pk, hardware_id=hardware.pk, input_tokens=512, output_tokens=128,
                     concurrency=10)  # fmt: skip
    tpot = next(p for p in result.predictions if p.target == "tpot_ms")
    assert tpot.value == pytest.approx(9.0)
    assert (tpot.lower, tpot.upper, tpot.interval_note) == (None, None, NO_INTERVAL)


def test_simulated_runs_count_only_when_asked_for(team):
    """Demo and simulator runs are left out of the data unless include_simulated; then they are counted."""
    variant, hardware = ModelVariantFactory(team=team), HardwareProfileFactory(team=team)
    for conc in (1, 2, 4, 8, 16, 32):
        reported = ReportedSummary(metrics={"ttft_ms": {"mean": 30 + conc + (conc % 3)}, "input_tokens": {"mean": 512},
                                            "output_tokens": {"mean": 128}})  # fmt: skip
        run_store(team=team, parsed=ParsedRun(source_format="x", concurrency=conc, reported=reported,
                                              is_simulated=True), target=RunTarget(variant, hardware, None))  # fmt: skip
    question = dict(team=team, variant_id=variant.pk, hardware_id=hardware.pk, input_tokens=512, output_tokens=128,
                    concurrency=10)  # fmt: skip
    with pytest.raises(NotEnoughData, match="0 usable run"):
        predict(**question)
    assert predict(**question, include_simulated=True).simulated_runs == 6
    rows = modeling_configurations(team=team)
    assert rows == [] and modeling_configurations(team=team, include_simulated=True)[0]["runs"] == 6


def test_a_question_outside_the_data_is_flagged_and_less_confident(team, setup):
    variant, hardware = setup
    inside = predict(team=team, variant_id=variant.pk, hardware_id=hardware.pk, input_tokens=512, output_tokens=128,
                     concurrency=8)  # fmt: skip
    outside = predict(team=team, variant_id=variant.pk, hardware_id=hardware.pk, input_tokens=8000,
                      output_tokens=128, concurrency=256)  # fmt: skip
    assert outside.extrapolation == ["input_tokens", "concurrency"]
    assert outside.confidence < inside.confidence
    assert any("Outside the measured range" in note for note in outside.notes)


def test_it_refuses_with_too_few_runs(team):
    variant, hardware = ModelVariantFactory(team=team), HardwareProfileFactory(team=team)
    with pytest.raises(NotEnoughData, match=f"0 usable run.*at least {MIN_RUNS}"):
        predict(team=team, variant_id=variant.pk, hardware_id=hardware.pk, input_tokens=1, output_tokens=1,
                concurrency=1)  # fmt: skip


def test_it_does_not_see_another_teams_runs(team, other_team, setup):
    variant, hardware = setup
    with pytest.raises(NotEnoughData):
        predict(team=other_team, variant_id=variant.pk, hardware_id=hardware.pk, input_tokens=1, output_tokens=1,
                concurrency=1)  # fmt: skip


def test_a_constant_feature_is_left_out_and_said(team):
    """Input and output tokens never varied: the model uses concurrency alone and says so."""
    variant, hardware = ModelVariantFactory(team=team), HardwareProfileFactory(team=team)
    for conc in (1, 2, 4, 8, 16, 32):
        reported = ReportedSummary(metrics={"ttft_ms": {"mean": 30 * 1.05**conc}, "input_tokens": {"mean": 512},
                                            "output_tokens": {"mean": 128}})  # fmt: skip
        run_store(team=team, parsed=ParsedRun(source_format="x", concurrency=conc, reported=reported),
                  target=RunTarget(variant, hardware, None))  # fmt: skip
    result = predict(team=team, variant_id=variant.pk, hardware_id=hardware.pk, input_tokens=512, output_tokens=128,
                     concurrency=10)  # fmt: skip
    assert result.features_used == ["concurrency"] and result.features_text == "concurrency"
    assert result.predictions[0].value == pytest.approx(30 * 1.05**10)
    assert any("input tokens was 512 in every measured run" in n for n in result.notes)


def test_configurations_say_which_have_enough_data(team, setup):
    variant, hardware = setup
    other = HardwareProfileFactory(team=team, name="small box")
    run_store(team=team, parsed=ParsedRun(source_format="x", concurrency=1, reported=ReportedSummary(
        metrics={"input_tokens": {"mean": 1}, "output_tokens": {"mean": 1}})), target=RunTarget(variant, other, None))  # fmt: skip
    rows = {(c["variant_id"], c["hardware_id"]): c for c in modeling_configurations(team=team)}
    assert rows[(variant.pk, hardware.pk)]["runs"] == len(CONFIGS) and rows[(variant.pk, hardware.pk)]["enough_data"]
    assert rows[(variant.pk, other.pk)]["runs"] == 1 and not rows[(variant.pk, other.pk)]["enough_data"]
