"""Gates on real runs (the real run kinds, no fakes): an experiment against the simulator repeated through the fair
queue's task, judged by thresholds and against a pinned baseline; a gate whose run fails."""

import pytest

from apps.experiments.models import Experiment
from apps.gates.models import Gate
from apps.gates.services import gates_evaluate_pending
from tests.automation.test_runkinds_support import drain, submitted  # noqa: F401 (fixture)
from tests.batches.helpers import approved_case, sim_endpoint
from tests.gates.conftest import notified  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def template(team, member, submitted):  # noqa: F811
    """A completed experiment: 2 test cases × 3 responses against the simulator."""
    from apps.experiments.services import experiment_create, experiment_start

    endpoint = sim_endpoint(team, model_names=["sim-small", "sim-large"])
    cases = [approved_case(team, member, title=f"case {n}", prompt=f"Explain caching {n}", expected_output="",
                           evaluator="regex", evaluator_settings={"pattern": "."}) for n in range(2)]  # fmt: skip
    experiment = experiment_create(team=team, user=member, name="nightly quality", targets=[(endpoint, "sim-small")],
                                   test_cases=cases, responses_per_item=3,
                                   parameters={"temperature": 0.2, "max_tokens": 30})  # fmt: skip
    experiment_start(experiment=experiment)
    assert drain(submitted) == ["completed"]
    return experiment


def test_a_gate_on_a_real_experiment_passes_its_thresholds_and_the_baseline(member_api, template, submitted, notified):  # noqa: F811
    """Started through the API, run by the task (the fair queue's), judged on the tick: passed, each criterion with
    its figure, interval and test."""
    answer = member_api.post("/api/v1/gates", {
        "kind": "experiment", "run": template.pk, "model": "sim-large", "baseline": template.pk,
        "criteria": ["pass_rate >= 0.5", "error_rate <= 5%", "no significant regression at p < 0.05"],
    }, format="json")  # fmt: skip
    assert answer.status_code == 201, answer.content
    gate = answer.json()
    assert gate["status"] == "pending" and [func for _, func, _ in submitted] == [
        "apps.experiments.tasks.experiment_run"
    ]
    repeat = Experiment.objects.get(pk=gate["run"]["id"])
    assert [t.model for t in repeat.targets.all()] == ["sim-large"]
    assert gates_evaluate_pending() == 0  # its run has not run yet
    assert drain(submitted) == ["completed"]
    assert gates_evaluate_pending() == 1
    body = member_api.get(f"/api/v1/gates/{gate['id']}").json()
    assert body["status"] == "passed", body
    pass_rate, error_rate, regression = body["results"]
    assert pass_rate["figure"] == "pass_rate" and pass_rate["value"] == 1.0 and pass_rate["interval"][1] == 1.0
    assert pass_rate["n"] == 6 and error_rate["value"] == 0.0 and error_rate["passed"]
    assert regression["kind"] == "regression" and regression["passed"] and regression["comparisons"]
    assert {c["figure"] for c in regression["comparisons"]} >= {"pass_rate", "error_rate"}
    assert [n["event"] for n in notified] == ["gate_finished"]


def test_a_gate_fails_when_its_real_run_fails(member_api, team, template, submitted, notified):  # noqa: F811
    """The change under test is an endpoint that cannot work: the run fails, the gate fails with the run's error."""
    broken = sim_endpoint(team, "broken", base_url="sim://local?error_rate=2", model_names=[])
    answer = member_api.post("/api/v1/gates", {"kind": "experiment", "run": template.pk, "endpoint": broken.pk,
                                               "criteria": ["pass_rate >= 0.5"]}, format="json")  # fmt: skip
    assert answer.status_code == 201, answer.content
    assert drain(submitted) == ["failed"]
    body = member_api.get(f"/api/v1/gates/{answer.json()['id']}").json()
    assert body["status"] == "failed" and body["results"] == []
    assert "failed: " in body["reason"] and "error_rate" in body["reason"]
    assert Gate.objects.get().finished_at is not None


def test_the_script_gates_a_real_experiment_end_to_end(live_server, member, team, template, submitted, notified):  # noqa: F811
    """llmbench-gate against the live server: the repeat is queued, run by its task meanwhile, judged; exit 0."""
    import os
    import subprocess
    import sys
    import time

    from apps.accounts.services import token_create
    from tests.gates.test_script import SCRIPT

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LLMBENCH_")},
           "LLMBENCH_TOKEN": token_create(user=member, team=team, name="ci").key}  # fmt: skip
    script = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--url", live_server.url, "--kind", "experiment", "--run", str(template.pk),
         "--criterion", "pass_rate >= 0.5", "--criterion", "p95_e2e_ms <= 60 s", "--poll", "0.2", "--timeout", "60"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not submitted and script.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting for a condition: the gate's run queued by the server
    assert submitted, script.communicate(timeout=5)
    assert drain(submitted) == ["completed"]
    out, err = script.communicate(timeout=60)
    assert script.returncode == 0, (out, err)
    assert "PASSED: All 2 criteria passed." in out and "p95_e2e_ms <= 60 s" in out
    assert Gate.objects.get().status == "passed"
