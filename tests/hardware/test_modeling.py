"""Prediction: OLS with a 95% prediction interval, checked against numpy/scipy; honest refusals."""

import numpy as np
import pytest
from scipy import stats

from apps.hardware.modeling import MIN_RUNS, NotEnoughData, modeling_configurations, predict
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


def test_the_prediction_and_interval_match_ordinary_least_squares(team, setup):
    variant, hardware = setup
    result = predict(team=team, variant_id=variant.pk, hardware_id=hardware.pk, input_tokens=600, output_tokens=128,
                     concurrency=10)  # fmt: skip
    ttft_prediction = next(p for p in result.predictions if p.target == "ttft_ms")

    from apps.hardware.models import RunSummary

    summaries = RunSummary.objects.filter(run__variant=variant).order_by("run_id")
    x = np.array([[1, s.metrics["input_tokens"]["mean"], s.metrics["output_tokens"]["mean"], s.run.concurrency]
                  for s in summaries], dtype=float)  # fmt: skip
    y = np.array([s.metrics["ttft_ms"]["mean"] for s in summaries])
    beta = np.linalg.lstsq(x, y, rcond=None)[0]
    x0 = np.array([1, 600, 128, 10.0])
    dof = len(y) - 4
    s2 = ((y - x @ beta) ** 2).sum() / dof
    half = stats.t.ppf(0.975, dof) * np.sqrt(s2 * (1 + x0 @ np.linalg.inv(x.T @ x) @ x0))
    assert ttft_prediction.value == pytest.approx(x0 @ beta)
    assert ttft_prediction.upper - ttft_prediction.value == pytest.approx(half)
    assert ttft_prediction.lower < ttft(600, 128, 10) < ttft_prediction.upper
    assert ttft_prediction.r_squared > 0.95
    assert result.extrapolation == [] and result.confidence_label in {"high", "medium"}


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
    variant, hardware = ModelVariantFactory(team=team), HardwareProfileFactory(team=team)
    for conc in (1, 2, 4, 8, 16, 32):
        reported = ReportedSummary(metrics={"ttft_ms": {"mean": 30 + conc}, "input_tokens": {"mean": 512},
                                            "output_tokens": {"mean": 128}})  # fmt: skip
        run_store(team=team, parsed=ParsedRun(source_format="x", concurrency=conc, reported=reported),
                  target=RunTarget(variant, hardware, None))  # fmt: skip
    result = predict(team=team, variant_id=variant.pk, hardware_id=hardware.pk, input_tokens=512, output_tokens=128,
                     concurrency=10)  # fmt: skip
    assert result.features_used == ["concurrency"]
    assert result.predictions[0].value == pytest.approx(40.0)
    assert any("input tokens was 512 in every measured run" in n for n in result.notes)


def test_configurations_say_which_have_enough_data(team, setup):
    variant, hardware = setup
    other = HardwareProfileFactory(team=team, name="small box")
    run_store(team=team, parsed=ParsedRun(source_format="x", concurrency=1, reported=ReportedSummary(
        metrics={"input_tokens": {"mean": 1}, "output_tokens": {"mean": 1}})), target=RunTarget(variant, other, None))  # fmt: skip
    rows = {(c["variant_id"], c["hardware_id"]): c for c in modeling_configurations(team=team)}
    assert rows[(variant.pk, hardware.pk)]["runs"] == len(CONFIGS) and rows[(variant.pk, hardware.pk)]["enough_data"]
    assert rows[(variant.pk, other.pk)]["runs"] == 1 and not rows[(variant.pk, other.pk)]["enough_data"]
