"""run_store: samples and summary stored together (the summary computed beside the bulk insert), all or nothing."""

import numpy as np
import pytest

from apps.hardware.models import RequestSample, RunSummary
from apps.hardware.parsed import ParsedRun, ReportedSummary
from apps.hardware.services import RunTarget, itl_from_bytes, run_store
from apps.hardware.stats import SampleColumns, summarize
from tests.factories import HardwareProfileFactory, ModelVariantFactory
from tests.hardware.helpers import generated_samples

pytestmark = pytest.mark.django_db


def _target(team):
    return RunTarget(ModelVariantFactory(team=team), HardwareProfileFactory(team=team), None)


def test_the_stored_summary_is_summarize_of_the_samples(team):
    """The summary computed while the rows are written equals summarize() of the same samples."""
    samples = generated_samples(40, seed=3)
    run = run_store(team=team, parsed=ParsedRun(source_format="x", concurrency=4, samples=samples),
                    target=_target(team))  # fmt: skip
    rows = [(s.error_code, s.ttft_ms, s.e2e_ms, s.input_tokens, s.output_tokens, s.mean_itl_ms,
             None if s.itl_ms is None else np.asarray(s.itl_ms), s.start_offset_ms) for s in samples]  # fmt: skip
    expected = summarize(SampleColumns.from_rows(rows))
    summary = RunSummary.objects.get(run=run)
    assert summary.source == RunSummary.Source.SAMPLES and summary.metrics.keys() == expected.metrics.keys()
    for metric, figures in expected.metrics.items():
        assert summary.metrics[metric] == pytest.approx(figures), metric
    assert summary.request_count == 40 and summary.itl_source == "pooled gaps"


def test_gaps_are_stored_exactly(team):
    """Every sample's gaps read back bit for bit (float64 little-endian)."""
    samples = generated_samples(10, seed=5, failures=0)
    run = run_store(team=team, parsed=ParsedRun(source_format="x", concurrency=1, samples=samples),
                    target=_target(team))  # fmt: skip
    stored = dict(RequestSample.objects.filter(run=run).values_list("index", "itl_ms"))
    assert all(itl_from_bytes(stored[s.index]).tolist() == s.itl_ms for s in samples)


def test_a_subset_of_samples_keeps_the_reported_summary(team):
    """guidellm-style: the samples are a random subset, so the summary is the tool's and the samples are kept."""
    reported = ReportedSummary(metrics={"ttft_ms": {"mean": 77.0}}, request_count=600, error_count=3)
    parsed = ParsedRun(source_format="guidellm", concurrency=4, samples=generated_samples(6, failures=0),
                       reported=reported, samples_are_subset=True)  # fmt: skip
    run = run_store(team=team, parsed=parsed, target=_target(team))
    summary = RunSummary.objects.get(run=run)
    assert (summary.source, summary.request_count, summary.metrics) == ("reported", 600, {"ttft_ms": {"mean": 77.0}})
    assert RequestSample.objects.filter(run=run).count() == 6
