"""Load sweeps: each step stored as a performance run, cancel, resume after a lost worker,
progress from the database, and the pages, API, SSE and websocket by role and team."""

import asyncio
import json
import re
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.urls import reverse
from django.utils import timezone

from apps.batches.models import LoadSweep, LoadSweepStep, Status
from apps.batches.runner import run_sweep, synthetic_prompts
from apps.batches.services import progress_payload, sweep_cancel, sweep_create, sweep_start, sweeps_recover_stalled
from apps.hardware.models import PerformanceRun, RequestSample
from apps.providers.models import ProviderEndpoint
from tests.factories import HardwareProfileFactory, ModelVariantFactory

pytestmark = pytest.mark.django_db


def sim_endpoint(team) -> ProviderEndpoint:
    return ProviderEndpoint.objects.create(team=team, name="sim", kind="sim", model_names=["sim-small"])


def make_sweep(team, **fields) -> LoadSweep:
    defaults = {
        "name": "sweep", "endpoint": fields.pop("endpoint", None) or sim_endpoint(team), "model": "sim-small", "variant": ModelVariantFactory(team=team),
        "hardware": HardwareProfileFactory(team=team), "mode": "closed", "levels": [1, 4], "step_request_count": 8,
        "prompt_tokens": 20, "output_tokens": 16,
    }  # fmt: skip
    defaults.update(fields)
    return sweep_create(team=team, user=None, **defaults)


# The runner writes progress from a worker thread (its own database connection): these tests
# commit for real so that thread sees the rows.
@pytest.mark.django_db(transaction=True)
class TestRunner:
    def test_each_step_becomes_a_performance_run_with_its_samples(self, team):
        sweep = make_sweep(team)
        assert run_sweep(sweep.pk) == Status.COMPLETED
        sweep.refresh_from_db()
        steps = list(sweep.steps.order_by("index"))
        assert [s.status for s in steps] == [Status.COMPLETED, Status.COMPLETED]
        runs = [s.run for s in steps]
        assert [r.concurrency for r in runs] == [1, 4]
        assert all(RequestSample.objects.filter(run=r).count() == 8 for r in runs)
        whole = runs[1].summary.metrics["whole_step"]  # 8 requests at 4 streams: 3 opened the step (ramp-up)
        assert whole["ttft_ms"]["count"] + whole["error_count"] == 8
        assert runs[1].summary.metrics["phases"]["ramp"] == 3
        assert "simulated" in runs[0].tags and runs[0].variant == sweep.variant
        assert steps[1].achieved_concurrency > 2

    def test_open_loop_steps_record_the_rate(self, team):
        sweep = make_sweep(team, mode="open", levels=[20], step_request_count=10, arrivals="poisson")
        run_sweep(sweep.pk)
        step = sweep.steps.get()
        assert step.run.request_rate_rps == 20 and step.run.concurrency is None
        assert step.dispatch_delay_p99_ms is not None and step.achieved_rate_rps > 0

    def test_a_finished_sweep_is_not_run_twice(self, team):
        sweep = make_sweep(team)
        run_sweep(sweep.pk)
        run_sweep(sweep.pk)
        assert PerformanceRun.objects.count() == 2

    def test_a_cancel_before_the_worker_starts_runs_nothing(self, team):
        sweep = make_sweep(team)
        sweep_cancel(sweep=sweep)
        assert run_sweep(sweep.pk) == Status.CANCELLED
        assert not PerformanceRun.objects.exists()

    def test_a_lost_worker_is_marked_failed_and_resume_runs_only_the_rest(self, team):
        sweep = make_sweep(team, levels=[1, 2, 3])
        run_sweep(sweep.pk)
        first_runs = set(PerformanceRun.objects.values_list("pk", flat=True))
        # Simulate a worker killed during step 3: that step never finished, the heartbeat stopped.
        step = sweep.steps.get(index=2)
        PerformanceRun.objects.filter(pk=step.run_id).delete()
        LoadSweepStep.objects.filter(pk=step.pk).update(status=Status.RUNNING, run=None)
        LoadSweep.objects.filter(pk=sweep.pk).update(
            status=Status.RUNNING, heartbeat_at=timezone.now() - timedelta(minutes=5)
        )
        assert sweeps_recover_stalled() == 1
        sweep.refresh_from_db()
        assert sweep.status == Status.FAILED and "Resume" in sweep.error
        sweep_start(sweep=sweep)
        assert run_sweep(sweep.pk) == Status.COMPLETED
        assert PerformanceRun.objects.count() == 3
        assert len(first_runs & set(PerformanceRun.objects.values_list("pk", flat=True))) == 2

    def test_prompts_are_deterministic_and_distinct(self, team):
        sweep = make_sweep(team, prompt_tokens=10)
        assert synthetic_prompts(sweep) == synthetic_prompts(sweep)
        assert len(set(synthetic_prompts(sweep)[:50])) == 50


@pytest.mark.django_db(transaction=True)
class TestProgress:
    def test_the_payload_is_read_from_the_database(self, team):
        sweep = make_sweep(team)
        run_sweep(sweep.pk)
        payload = progress_payload(LoadSweep.objects.get(pk=sweep.pk))
        assert payload["status"] == "completed" and payload["steps_done"] == 2
        assert payload["steps"][0]["run_id"] and payload["steps"][0]["ttft_p50_ms"] > 0

    def test_a_finished_sweep_shows_its_final_figures_not_zero(self, team, member_client):
        """The worker clears the live figures at the end; the tiles show the last step's stored run instead of 0 / 0."""
        sweep = make_sweep(team, levels=[1, 2], step_request_count=6)
        run_sweep(sweep.pk)
        sweep.refresh_from_db()
        assert sweep.progress == {}  # what the tiles used to read
        payload = progress_payload(sweep)
        summary = sweep.steps.get(index=1).run.summary
        assert payload["live_final"] and payload["live_step"] == 1
        # What was sent (the whole step), while the latencies are the steady window's (no ramp-up request).
        assert payload["live"]["requests_done"] == summary.metrics["whole_step"]["request_count"] == 6
        assert summary.request_count == 5 and summary.metrics["phases"] == {"steady": 5, "warmup": 0, "ramp": 1,
                                                                            "drain": 0}  # fmt: skip
        assert payload["live"]["ttft_p50_ms"] == summary.stat("ttft_ms", "p50") > 0
        assert payload["live"]["output_tokens_per_s"] == summary.output_token_throughput_tps > 0
        content = member_client.get(reverse("batches:sweep", args=[sweep.pk])).content.decode()
        assert '<strong id="live-done">6</strong>' in content and "Final figures of step 2" in content
        assert '<strong id="live-step">2</strong> of 2' in content

    def test_a_sweep_that_never_ran_shows_dashes_not_zero(self, team):
        payload = progress_payload(make_sweep(team))
        assert payload["live"] == {} and not payload["live_final"]


def page_state(content: str) -> tuple[set[str], bool, bool]:
    """The statuses a sweep page shows (its badge and every step row) and whether Start and Cancel are visible."""
    badge = re.search(r'id="sweep-status">([^<]+)<', content).group(1)
    rows = set(re.findall(r'<tr data-status="([^"]+)"', content))
    start = re.search(r'<form [^>]*id="start-form"[^>]*>', content).group(0)
    cancel = re.search(r'<form [^>]*id="cancel-form"[^>]*>', content).group(0)
    return {badge, *rows}, "hidden" not in start, "hidden" not in cancel


@pytest.mark.parametrize(
    ("status", "steps", "expected_cancel"),
    [("pending", ["pending", "pending"], True), ("running", ["completed", "running"], True),
     ("completed", ["completed", "completed"], False), ("cancelled", ["completed", "pending"], False),
     ("failed", ["completed", "running"], False)],
)  # fmt: skip
def test_a_sweep_page_never_shows_pending_completed_and_cancel_at_once(member_client, team, status, steps,
                                                                       expected_cancel):  # fmt: skip
    """Cancel only while pending or running; once finished no step reads "pending" or "running"."""
    sweep = make_sweep(team)
    LoadSweep.objects.filter(pk=sweep.pk).update(status=status)
    for index, step_status in enumerate(steps):
        sweep.steps.filter(index=index).update(status=step_status)
    shown, start, cancel = page_state(member_client.get(reverse("batches:sweep", args=[sweep.pk])).content.decode())
    assert cancel == expected_cancel
    assert not ({"pending", "completed"} <= shown and cancel)
    if status in ("completed", "failed", "cancelled"):
        assert not shown & {"pending", "running"}, shown
    assert start == (status in ("pending", "failed"))
    payload = progress_payload(LoadSweep.objects.get(pk=sweep.pk))
    assert payload["actions"]["cancel"] == expected_cancel  # the script hides and shows from the same answer


class TestPagesAndApi:
    def test_sweeps_on_the_simulator_carry_the_simulated_badge(self, member_client, team):
        """Their list row and their page say "simulated"; a sweep against a real endpoint does not."""
        simulated = make_sweep(team, name="on the simulator")
        real_endpoint = ProviderEndpoint.objects.create(team=team, name="vllm", kind="openai_compatible",
                                                        base_url="http://127.0.0.1:9/v1", model_names=["m"])  # fmt: skip
        real = make_sweep(team, name="on vllm", endpoint=real_endpoint)
        listing = member_client.get(reverse("batches:sweeps")).content.decode()
        rows = {name: row for row in listing.split("<tr") for name in ("on the simulator", "on vllm") if name in row}
        assert 'class="badge simulated"' in rows["on the simulator"] and "simulated" not in rows["on vllm"]
        assert (
            'class="badge simulated"'
            in member_client.get(reverse("batches:sweep", args=[simulated.pk])).content.decode()
        )
        assert (
            'class="badge simulated"'
            not in member_client.get(reverse("batches:sweep", args=[real.pk])).content.decode()
        )

    def test_levels_and_numbers_print_without_trailing_zeros(self, member_client, team):
        sweep = make_sweep(team, levels=[1, 16, 64])
        content = member_client.get(reverse("batches:sweep", args=[sweep.pk])).content.decode()
        visible = re.sub(r"<script.*?</script>", "", content, flags=re.S)  # the JSON state keeps its floats
        assert "1, 16, 64" in visible and "16.0" not in visible and "<td>16</td>" in visible

    @pytest.mark.parametrize(
        ("field", "value"),
        [("step_request_count", 0), ("step_duration_s", 0), ("prompt_tokens", 0), ("output_tokens", 0),
         ("output_tokens", 10_000_000), ("temperature", 3), ("levels", "0, 4"), ("levels", "1, 5000"),
         ("prompt_tokens_stdev", -1)],
    )  # fmt: skip
    def test_numbers_out_of_bounds_are_a_400_on_their_field(self, member_client, team, field, value):
        """Zero requests, zero seconds, zero tokens or a concurrency of 0 per step is refused, naming the field."""
        body = {"name": "x", "target": f"{sim_endpoint(team).pk}:sim-small",
                "variant": ModelVariantFactory(team=team).pk, "mode": "closed", "arrivals": "constant", "levels": "1, 2",
                "step_request_count": 4, "prompt_tokens": 10, "prompt_tokens_stdev": 0, "output_tokens": 8,
                "temperature": 0, "seed": 0, field: value}  # fmt: skip
        response = member_client.post(reverse("batches:sweep-new"), body)
        assert response.status_code == 400 and field in response.context["form"].errors
        assert not LoadSweep.objects.exists()

    def test_a_prompt_over_the_limit_is_refused(self, member_client, team, settings):
        settings.PROMPT_MAX_CHARS = 50
        body = {"name": "x", "target": f"{sim_endpoint(team).pk}:sim-small",
                "variant": ModelVariantFactory(team=team).pk, "mode": "closed", "arrivals": "constant", "levels": "1",
                "step_request_count": 4, "prompt_tokens": 10, "prompt_tokens_stdev": 0, "output_tokens": 8,
                "temperature": 0, "seed": 0, "prompts_text": "short\n" + "y" * 51}  # fmt: skip
        response = member_client.post(reverse("batches:sweep-new"), body)
        message = response.context["form"].errors["prompts_text"][0]
        assert response.status_code == 400 and "Prompt 2" in message and "limit is 50 characters" in message

    def test_a_member_creates_and_starts_a_sweep(self, member_client, team, django_capture_on_commit_callbacks):
        endpoint, variant = sim_endpoint(team), ModelVariantFactory(team=team)
        body = {"name": "web", "target": f"{endpoint.pk}:sim-small", "variant": variant.pk, "mode": "closed",
                "arrivals": "constant", "levels": "1,2", "step_request_count": 4, "prompt_tokens": 10,
                "prompt_tokens_stdev": 0, "output_tokens": 8, "temperature": 0, "seed": 0, "start": "1"}  # fmt: skip
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = member_client.post(reverse("batches:sweep-new"), body)
        sweep = LoadSweep.objects.get()
        assert response.status_code == 302 and sweep.levels == [1.0, 2.0] and len(callbacks) == 1
        assert (sweep.endpoint, sweep.model) == (endpoint, "sim-small")
        page = member_client.get(reverse("batches:sweep", args=[sweep.pk]))
        assert page.status_code == 200 and b"/ws/sweeps/" in page.content

    def test_bad_levels_are_400(self, member_client, team):
        body = {"name": "x", "target": f"{sim_endpoint(team).pk}:sim-small", "variant": ModelVariantFactory(team=team).pk,
                "mode": "closed", "levels": "1, two", "step_request_count": 4}  # fmt: skip
        response = member_client.post(reverse("batches:sweep-new"), body)
        assert response.status_code == 400 and "levels" in response.context["form"].errors

    def test_another_teams_endpoint_is_refused(self, member_client, team, other_team):
        body = {"name": "x", "target": f"{sim_endpoint(other_team).pk}:sim-small",
                "variant": ModelVariantFactory(team=team).pk, "mode": "closed", "levels": "1", "step_request_count": 4}  # fmt: skip
        response = member_client.post(reverse("batches:sweep-new"), body)
        assert response.status_code == 400 and "target" in response.context["form"].errors
        assert not LoadSweep.objects.exists()

    def test_the_endpoint_and_model_are_picked_from_the_teams_pairs(self, member_client, team, other_team):
        """One select of "endpoint · model" for the team's endpoints only; nothing typed."""
        mine = sim_endpoint(team)
        mine.model_names = ["sim-small", "sim-large"]
        mine.save()
        theirs = sim_endpoint(other_team)
        form = member_client.get(reverse("batches:sweep-new")).context["form"]
        assert form.fields["target"].choices == [("sim (simulated)", [(f"{mine.pk}:sim-small", "sim · sim-small (simulated)"),
                                                                      (f"{mine.pk}:sim-large", "sim · sim-large (simulated)")])]  # fmt: skip
        assert "model" not in form.fields and "endpoint" not in form.fields and theirs.pk != mine.pk

    def test_a_viewer_cannot_create_start_or_cancel(self, viewer_client, team):
        sweep = make_sweep(team)
        assert viewer_client.post(reverse("batches:sweep-new"), {}).status_code == 403
        assert viewer_client.post(reverse("batches:sweep-start", args=[sweep.pk])).status_code == 403
        assert viewer_client.post(reverse("batches:sweep-cancel", args=[sweep.pk])).status_code == 403

    def test_another_teams_sweep_is_404(self, member_client, other_team):
        sweep = make_sweep(other_team)
        assert member_client.get(reverse("batches:sweep", args=[sweep.pk])).status_code == 404
        assert member_client.post(reverse("batches:sweep-cancel", args=[sweep.pk])).status_code == 404

    def test_api_create_status_cancel(self, member_api, team):
        endpoint, variant = sim_endpoint(team), ModelVariantFactory(team=team)
        body = {"name": "api", "endpoint": endpoint.pk, "model": "sim-small", "variant": variant.pk, "mode": "open",
                "arrivals": "poisson", "levels": [5, 10], "step_duration_s": 2}  # fmt: skip
        response = member_api.post("/api/v1/sweeps", body, format="json")
        assert response.status_code == 201, response.json()
        sweep_id = response.json()["id"]
        status = member_api.get(f"/api/v1/sweeps/{sweep_id}").json()
        assert status["status"] == "pending" and status["state"]["steps_total"] == 2
        assert member_api.post(f"/api/v1/sweeps/{sweep_id}/cancel").json()["status"] == "cancelled"
        assert member_api.post(f"/api/v1/sweeps/{sweep_id}/start").status_code == 409

    def test_api_bad_input_names_the_field(self, member_api, team):
        response = member_api.post("/api/v1/sweeps", {"name": "x", "levels": []}, format="json")
        assert response.status_code == 400 and {"endpoint", "levels", "variant"} <= set(response.json())

    def test_api_roles_and_teams(self, viewer_api, anon_api, team, other_team):
        mine, theirs = make_sweep(team), make_sweep(other_team)
        assert [s["id"] for s in viewer_api.get("/api/v1/sweeps").json()["results"]] == [mine.pk]
        assert viewer_api.get(f"/api/v1/sweeps/{theirs.pk}").status_code == 404
        assert viewer_api.post(f"/api/v1/sweeps/{mine.pk}/cancel").status_code == 403
        assert anon_api.get("/api/v1/sweeps").status_code == 401

    @pytest.mark.django_db(transaction=True)
    def test_sse_streams_the_state_until_finished(self, member_api, team):
        sweep = make_sweep(team)
        run_sweep(sweep.pk)
        response = member_api.get(f"/api/v1/sweeps/{sweep.pk}/progress")
        assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
        body = b"".join(response).decode()  # the async stream, consumed synchronously by the test client
        payload = json.loads(body.split("data: ", 1)[1].split("\n", 1)[0])
        assert payload["status"] == "completed"

    def test_sse_refuses_anonymous_and_other_teams(self, anon_api, member_api, other_team):
        sweep = make_sweep(other_team)
        assert anon_api.get(f"/api/v1/sweeps/{sweep.pk}/progress").status_code == 401
        assert member_api.get(f"/api/v1/sweeps/{sweep.pk}/progress").status_code == 404


@pytest.mark.django_db(transaction=True)
class TestWebsocket:
    def _communicator(self, user, sweep_id, origin=b"http://localhost"):
        from channels.auth import AuthMiddlewareStack  # noqa: F401

        from llmbench.asgi import application

        communicator = WebsocketCommunicator(
            application, f"/ws/sweeps/{sweep_id}/", headers=[(b"origin", origin), (b"host", b"localhost")]
        )
        if user is not None:
            communicator.scope["user"] = user
        return communicator

    def _run(self, coroutine):
        return asyncio.run(coroutine)

    def test_a_member_gets_the_state_then_updates(self, team, member):
        sweep = make_sweep(team)

        async def scenario():
            communicator = self._communicator(member, sweep.pk)
            connected, _ = await communicator.connect()
            assert connected
            first = await communicator.receive_json_from(timeout=5)
            assert first["status"] == "pending"
            await database_sync_to_async(sweep_cancel)(sweep=sweep)
            update = await communicator.receive_json_from(timeout=5)
            assert update["status"] == "cancelled"
            await communicator.disconnect()

        self._run(scenario())

    def test_anonymous_wrong_origin_and_other_team_are_refused(self, team, other_team, member):
        theirs = make_sweep(other_team)
        mine = make_sweep(team)

        async def refused(user, sweep_id, origin=b"http://localhost"):
            communicator = self._communicator(user, sweep_id, origin)
            connected, _ = await communicator.connect()
            await communicator.disconnect()
            return not connected

        from django.contrib.auth.models import AnonymousUser

        assert self._run(refused(AnonymousUser(), mine.pk))
        assert self._run(refused(member, theirs.pk))
        assert self._run(refused(member, mine.pk, origin=b"http://evil.example"))
