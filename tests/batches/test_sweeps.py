"""Load sweeps: each step stored as a performance run, cancel, resume after a lost worker,
progress from the database, and the pages, API, SSE and websocket by role and team."""

import asyncio
import json
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
        "name": "sweep", "endpoint": sim_endpoint(team), "model": "sim-small", "variant": ModelVariantFactory(team=team),
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
        assert runs[1].summary.metrics["ttft_ms"]["count"] + runs[1].summary.error_count == 8
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


class TestPagesAndApi:
    def test_a_member_creates_and_starts_a_sweep(self, member_client, team, django_capture_on_commit_callbacks):
        endpoint, variant = sim_endpoint(team), ModelVariantFactory(team=team)
        body = {"name": "web", "endpoint": endpoint.pk, "model": "sim-small", "variant": variant.pk, "mode": "closed",
                "arrivals": "constant", "levels": "1,2", "step_request_count": 4, "prompt_tokens": 10,
                "prompt_tokens_stdev": 0, "output_tokens": 8, "temperature": 0, "seed": 0, "start": "1"}  # fmt: skip
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = member_client.post(reverse("batches:sweep-new"), body)
        sweep = LoadSweep.objects.get()
        assert response.status_code == 302 and sweep.levels == [1.0, 2.0] and len(callbacks) == 1
        page = member_client.get(reverse("batches:sweep", args=[sweep.pk]))
        assert page.status_code == 200 and b"/ws/sweeps/" in page.content

    def test_bad_levels_are_400(self, member_client, team):
        body = {"name": "x", "endpoint": sim_endpoint(team).pk, "model": "m", "variant": ModelVariantFactory(team=team).pk,
                "mode": "closed", "levels": "1, two", "step_request_count": 4}  # fmt: skip
        response = member_client.post(reverse("batches:sweep-new"), body)
        assert response.status_code == 400 and "levels" in response.context["form"].errors

    def test_another_teams_endpoint_is_refused(self, member_client, team, other_team):
        body = {"name": "x", "endpoint": sim_endpoint(other_team).pk, "model": "m",
                "variant": ModelVariantFactory(team=team).pk, "mode": "closed", "levels": "1", "step_request_count": 4}  # fmt: skip
        response = member_client.post(reverse("batches:sweep-new"), body)
        assert response.status_code == 400 and "endpoint" in response.context["form"].errors

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
