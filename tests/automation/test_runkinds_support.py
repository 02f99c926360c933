"""Building blocks of the run-kind tests: the fair queue's submissions recorded instead of sent, and the worker's
part run in the test (task after task, as django-q would). A test module makes its fixture with

    @pytest.fixture
    def submitted(monkeypatch):
        return record_submissions(monkeypatch)
"""

from importlib import import_module

import pytest

from tests.threaded import closing_connection

SERVICE_MODULES = (
    "apps.experiments.services",
    "apps.batches.services",
    "apps.benchmarks.services",
    "apps.capacity.services",
    "apps.capacity.runner",  # a capacity search queues its next chunk itself
)


def record_submissions(monkeypatch) -> list[tuple]:
    """Every job_submit of the apps' services, as (team_id, func, args), instead of queueing it."""
    calls: list[tuple] = []

    def record(*, team_id, func, args=(), group="", label=""):
        calls.append((team_id, func, tuple(args)))

    for module in SERVICE_MODULES:
        monkeypatch.setattr(f"{module}.job_submit", record, raising=False)
    return calls


@closing_connection
def drain(calls: list[tuple]) -> list[str]:
    """Run the recorded tasks (and those they queue) until none is left; their outcomes."""
    outcomes = []
    while calls:
        _, func, args = calls.pop(0)
        module, name = func.rsplit(".", 1)
        outcomes.append(getattr(import_module(module), name)(*args))
    return outcomes


@pytest.fixture
def submitted(monkeypatch):
    """The fixture form of record_submissions (other modules import it: `submitted = support.submitted`)."""
    return record_submissions(monkeypatch)
