"""An experiment's responses with their evaluations, as CSV or JSON (streamed; formula-safe CSV)."""

import csv
import json
from collections.abc import Iterator

from apps.experiments.models import Experiment, Response
from llmbench.exports import neutralize_formula

COLUMNS = [
    "response_id", "target", "endpoint_kind", "model", "test_case", "test_case_version", "repetition", "content",
    "input_tokens", "output_tokens", "ttft_ms", "latency_ms", "cost_usd", "error_code", "error_message", "passed",
    "score", "evaluation_error", "overall_quality",
]  # fmt: skip


def _rows(experiment: Experiment) -> Iterator[dict]:
    responses = Response.objects.filter(experiment=experiment).select_related("target__endpoint", "test_case")
    for r in responses.order_by("id").iterator(chunk_size=2000):
        yield {
            "response_id": r.pk, "target": str(r.target.endpoint), "endpoint_kind": r.target.endpoint.kind,
            "model": r.target.model, "test_case": r.test_case.title if r.test_case else "",
            "test_case_version": r.test_case.version if r.test_case else None, "repetition": r.repetition,
            "content": r.content, "input_tokens": r.input_tokens, "output_tokens": r.output_tokens, "ttft_ms": r.ttft_ms,
            "latency_ms": r.latency_ms, "cost_usd": r.cost_usd, "error_code": r.error_code,
            "error_message": r.error_message, "passed": r.passed, "score": r.score,
            "evaluation_error": r.evaluation_error, "overall_quality": r.quality.get("overall"),
        }  # fmt: skip


class _Echo:
    def write(self, value):
        return value


def experiment_csv(experiment: Experiment) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(COLUMNS)
    for row in _rows(experiment):
        yield writer.writerow(["" if row[c] is None else neutralize_formula(row[c]) for c in COLUMNS])


def experiment_json(experiment: Experiment) -> Iterator[str]:
    yield json.dumps({"id": experiment.pk, "name": experiment.name, "parameters": experiment.parameters})[:-1]
    yield ', "responses": ['
    for i, row in enumerate(_rows(experiment)):
        yield ("," if i else "") + json.dumps(row)
    yield "]}"
