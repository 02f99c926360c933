"""Parameter sweep pages: list, create (with the estimate, the team's limit and refusals), the live
page, combinations, analysis, actions; by role and team; model output shown escaped; and the
websocket that feeds the live page."""

import asyncio

import pytest
from channels.testing import WebsocketCommunicator
from django.urls import reverse

from apps.batches.batch_runner import run_batch_chunk
from apps.batches.models import Batch
from apps.batches.services import batch_start
from apps.experiments.models import Response
from tests.batches.helpers import make_batch, sim_endpoint

pytestmark = pytest.mark.django_db


def form(**fields):
    data = {"name": "page sweep", "targets_text": "sim: sim-small", "prompt": "Explain caching.", "temperature": "0.2:1.0:0.4",
            "top_p": "0.5, 1.0", "max_tokens": "", "responses_per_item": 2, "concurrency": 4, "objective": "overall"}  # fmt: skip
    data.update(fields)
    return data


class TestCreatePage:
    def test_a_member_creates_and_starts_a_sweep(self, member_client, team, queued, django_capture_on_commit_callbacks):
        sim_endpoint(team)
        assert member_client.get(reverse("batches:batch-new")).status_code == 200
        with django_capture_on_commit_callbacks(execute=True):
            response = member_client.post(reverse("batches:batch-new"), form(start="1"))
        batch = Batch.objects.get()
        assert response.status_code == 302 and response.url == reverse("batches:batch", args=[batch.pk])
        assert batch.parameter_values == {"temperature": [0.2, 0.6, 1.0], "top_p": [0.5, 1.0]} and len(queued) == 1

    def test_bad_ranges_are_a_400_on_the_parameters_field(self, member_client, team):
        sim_endpoint(team)
        response = member_client.post(reverse("batches:batch-new"), form(temperature="1.0:0.1:0.1", top_p="0.5,,1"))
        errors = response.context["form"].errors
        assert response.status_code == 400 and "top_p" in errors and not Batch.objects.exists()
        response = member_client.post(reverse("batches:batch-new"), form(temperature="0.1:1.0:-1", top_p=""))
        assert "must be greater than 0" in response.context["form"].errors["temperature"][0]
        response = member_client.post(reverse("batches:batch-new"), form(temperature="", top_p=""))
        assert "Sweep at least one parameter" in response.context["form"].errors["temperature"][0]

    def test_over_the_limit_needs_the_box_ticked(self, member_client, team, queued, django_capture_on_commit_callbacks):
        sim_endpoint(team)
        team.batch_confirm_requests = 5
        team.save()
        response = member_client.post(reverse("batches:batch-new"), form(start="1"))
        assert response.status_code == 400
        assert "12 requests is over the team's limit of 5" in response.context["form"].errors["confirm"][0]
        assert not Batch.objects.exists()
        with django_capture_on_commit_callbacks(execute=True):
            response = member_client.post(reverse("batches:batch-new"), form(start="1", confirm="on"))
        assert response.status_code == 302 and len(queued) == 1

    def test_another_teams_endpoint_is_refused(self, member_client, team, other_team):
        sim_endpoint(other_team)
        response = member_client.post(reverse("batches:batch-new"), form())
        assert response.status_code == 400 and "targets_text" in response.context["form"].errors

    def test_a_viewer_cannot_create(self, viewer_client, team):
        sim_endpoint(team)
        assert viewer_client.get(reverse("batches:batch-new")).status_code == 200
        assert viewer_client.post(reverse("batches:batch-new"), form()).status_code == 403

    def test_the_estimate_shows_before_anything_is_stored(self, viewer_client, team):
        sim_endpoint(team)
        response = viewer_client.get(reverse("batches:batch-estimate"), form())
        assert response.status_code == 200 and b'id="estimate-combinations">6<' in response.content
        assert b'id="estimate-requests">12<' in response.content and not Batch.objects.exists()
        response = viewer_client.get(reverse("batches:batch-estimate"), form(temperature="0.1:x:0.1"))
        assert b"appears once" in response.content and b"temperature" in response.content

    def test_anonymous_is_sent_to_log_in(self, client):
        assert client.get(reverse("batches:batch-new")).status_code == 302
        assert client.get(reverse("batches:sweeps")).status_code == 302


class TestBatchPages:
    def test_the_list_shows_the_teams_sweeps_only(self, member_client, team, other_team):
        mine, theirs = make_batch(team, name="mine"), make_batch(other_team, name="theirs")
        page = member_client.get(reverse("batches:sweeps"))
        assert b"mine" in page.content and b"theirs" not in page.content and mine.pk != theirs.pk

    def test_the_live_page_and_its_friends(self, member_client, team):
        batch = make_batch(team)
        page = member_client.get(reverse("batches:batch", args=[batch.pk]))
        assert page.status_code == 200 and f"/ws/batches/{batch.pk}/".encode() in page.content
        assert b'id="heatmap"' in page.content and b"batch-heatmap" in page.content
        assert member_client.get(reverse("batches:batch-combinations", args=[batch.pk])).status_code == 200
        analysis = member_client.get(reverse("batches:batch-analysis", args=[batch.pk]))
        assert analysis.status_code == 200 and b"Not enough results" in analysis.content

    def test_other_teams_batches_are_404(self, member_client, other_team):
        batch = make_batch(other_team)
        for name in ("batches:batch", "batches:batch-combinations", "batches:batch-analysis"):
            assert member_client.get(reverse(name, args=[batch.pk])).status_code == 404
        for action in ("start", "cancel", "delete"):
            assert member_client.post(reverse(f"batches:batch-{action}", args=[batch.pk])).status_code == 404

    def test_actions_need_a_member_and_a_post(self, viewer_client, team):
        batch = make_batch(team)
        for action in ("start", "cancel", "delete"):
            assert viewer_client.post(reverse(f"batches:batch-{action}", args=[batch.pk])).status_code == 403
        assert viewer_client.get(reverse("batches:batch-start", args=[batch.pk])).status_code in (403, 405)

    def test_start_cancel_delete_from_the_page(self, member_client, team, queued, django_capture_on_commit_callbacks):
        batch = make_batch(team)
        with django_capture_on_commit_callbacks(execute=True):
            member_client.post(reverse("batches:batch-start", args=[batch.pk]))
        assert len(queued) == 1
        member_client.post(reverse("batches:batch-cancel", args=[batch.pk]))
        assert Batch.objects.get(pk=batch.pk).experiment.status == "cancelled"
        response = member_client.post(reverse("batches:batch-delete", args=[batch.pk]))
        assert response.status_code == 302 and not Batch.objects.exists()


@pytest.mark.django_db(transaction=True)
class TestWithResults:
    def test_analysis_page_and_its_htmx_partial(self, member_client, team, queued):
        batch = make_batch(team, repetitions=3)
        batch_start(batch=batch)
        run_batch_chunk(batch.pk)
        page = member_client.get(reverse("batches:batch-analysis", args=[batch.pk]))
        assert page.status_code == 200 and b'id="optimal-table"' in page.content and b"Kruskal-Wallis" in page.content
        partial = member_client.get(reverse("batches:batch-analysis", args=[batch.pk]), {"objective": "latency_ms"},
                                    HTTP_HX_REQUEST="true")  # fmt: skip
        assert partial.status_code == 200 and b"<html" not in partial.content and b"latency" in partial.content
        bad = member_client.get(reverse("batches:batch-analysis", args=[batch.pk]), {"weights": "speed:1"})
        assert bad.status_code == 200 and b"weigh quality, latency and cost" in bad.content

    def test_model_output_is_shown_as_text(self, member_client, team, queued):
        batch = make_batch(team, repetitions=1)
        batch_start(batch=batch)
        run_batch_chunk(batch.pk)
        Response.objects.filter(experiment_id=batch.pk).update(
            content='<script>alert("x")</script><img src=x onerror=alert(1)>'
        )
        page = member_client.get(reverse("batches:batch", args=[batch.pk])).content.decode()
        assert "<script>alert" not in page and "<img src=x" not in page and "&lt;script&gt;alert" in page


@pytest.mark.django_db(transaction=True)
class TestWebsocket:
    def _communicator(self, user, batch_id, origin=b"http://localhost"):
        from llmbench.asgi import application

        communicator = WebsocketCommunicator(
            application, f"/ws/batches/{batch_id}/", headers=[(b"origin", origin), (b"host", b"localhost")]
        )
        if user is not None:
            communicator.scope["user"] = user
        return communicator

    def test_a_member_gets_the_state_then_each_result_as_it_is_stored(self, team, member, queued):
        batch = make_batch(team, repetitions=1)
        batch_start(batch=batch)

        async def scenario():
            communicator = self._communicator(member, batch.pk)
            connected, _ = await communicator.connect()
            assert connected
            first = await communicator.receive_json_from(timeout=5)
            assert first["type"] == "state" and first["state"]["status"] == "pending" and first["results"] == []
            await asyncio.to_thread(run_batch_chunk, batch.pk)  # the worker's part, in a thread of its own
            seen, status = [], None
            while status != "completed":
                message = await communicator.receive_json_from(timeout=5)
                seen += message["results"]
                status = message["state"]["status"]
            await communicator.disconnect()
            return seen

        seen = asyncio.run(scenario())
        stored = list(Response.objects.filter(experiment_id=batch.pk).order_by("id"))
        assert [r["id"] for r in seen] == [r.pk for r in stored]  # every result, once, in order
        assert all(
            r["m"]["overall"] == s.quality["overall"] and r["p"] == s.parameters
            for r, s in zip(seen, stored, strict=True)
        )

    def test_anonymous_wrong_origin_and_other_team_are_refused(self, team, other_team, member):
        from django.contrib.auth.models import AnonymousUser

        mine, theirs = make_batch(team), make_batch(other_team)

        async def refused(user, batch_id, origin=b"http://localhost"):
            communicator = self._communicator(user, batch_id, origin)
            connected, _ = await communicator.connect()
            await communicator.disconnect()
            return not connected

        assert asyncio.run(refused(AnonymousUser(), mine.pk))
        assert asyncio.run(refused(member, theirs.pk))
        assert asyncio.run(refused(member, mine.pk, origin=b"http://evil.example"))
        assert asyncio.run(refused(member, 999_999))
