"""scripts/llmbench-gate as a pipeline runs it: a subprocess against the live server (the run kinds faked in the
server's process), exit 0 when the gate passes, 1 when it fails, 2 when it cannot start."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from apps.accounts.services import token_create
from apps.gates.models import Gate
from tests.gates.conftest import GOOD_FIGURES, figure

pytestmark = pytest.mark.django_db(transaction=True)

SCRIPT = Path(settings.BASE_DIR) / "scripts" / "llmbench-gate"


def run_script(live_server, token, *args, timeout=60):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMBENCH_")}
    if token:
        env["LLMBENCH_TOKEN"] = token
    return subprocess.run([sys.executable, str(SCRIPT), "--url", live_server.url, "--poll", "0.2", "--timeout", "30",
                           *args], env=env, capture_output=True, text=True, timeout=timeout)  # fmt: skip


@pytest.fixture
def token(member, team):
    return token_create(user=member, team=team, name="ci").key


@pytest.fixture
def template(team, fake_runs):
    fake_runs.next_state = "completed"  # the repeat has ended by the script's first look
    return fake_runs.add(team, "experiment", figures=GOOD_FIGURES)


def test_a_passing_gate_exits_0_and_prints_each_criterion(live_server, token, template, fake_runs, notified):
    """Started, waited for, a table with each criterion's figure and interval; exit code 0."""
    fake_runs.next_figures = GOOD_FIGURES
    done = run_script(live_server, token, "--kind", "experiment", "--run", str(template), "--model", "cand",
                      "--criterion", "pass_rate >= 0.9", "--criterion", "error_rate < 5%", "--name", "abc123")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "PASSED: All 2 criteria passed." in done.stdout
    assert "pass_rate >= 0.9" in done.stdout and "0.88 to 0.96" in done.stdout and "PASS" in done.stdout
    gate = Gate.objects.get()
    assert (gate.name, gate.model, gate.status) == ("abc123", "cand", "passed")


def test_a_failing_gate_exits_1(live_server, token, template, fake_runs, notified):
    """A criterion not met: FAIL in its row, exit code 1."""
    fake_runs.next_figures = {**GOOD_FIGURES, "pass_rate": figure("pass_rate", 0.5, low=0.4, high=0.6)}
    done = run_script(live_server, token, "--kind", "experiment", "--run", str(template),
                      "--criterion", "pass_rate >= 0.9")  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "FAILED: 1 of 1 criteria failed" in done.stdout and "FAIL" in done.stdout


def test_a_gate_whose_run_fails_exits_1_with_the_runs_error(live_server, token, template, fake_runs, notified):
    """The run failed: the gate fails, saying why."""
    fake_runs.next_state = "failed"
    done = run_script(live_server, token, "--kind", "experiment", "--run", str(template),
                      "--criterion", "pass_rate >= 0.9")  # fmt: skip
    assert done.returncode == 1 and "FAILED" in done.stdout and "(no criteria judged)" in done.stdout


def test_a_refused_gate_or_a_missing_token_exits_2_saying_why(live_server, token, template, fake_runs):
    """A bad criterion (the server's 400, by field), no token, an unreachable server: exit code 2."""
    done = run_script(live_server, token, "--kind", "experiment", "--run", str(template), "--criterion", "pass_rat > 1")
    assert done.returncode == 2 and "criteria:" in done.stderr and "unknown figure “pass_rat”" in done.stderr
    done = run_script(live_server, "", "--check", "nightly")
    assert done.returncode == 2 and "LLMBENCH_TOKEN" in done.stderr
    done = run_script(live_server, "not-a-token", "--check", "nightly")
    assert done.returncode == 2 and "HTTP 401" in done.stderr
    done = run_script(type("Server", (), {"url": "http://127.0.0.1:9"})(), token, "--check", "nightly")
    assert done.returncode == 2 and "cannot reach" in done.stderr
    done = run_script(live_server, token)
    assert done.returncode == 2 and "give --check NAME, or --kind and --run" in done.stderr
    assert Gate.objects.count() == 0
