"""The capacity search API: list, create, detail, start / resume / cancel, delete, progress as SSE and the
comparison, by role and team; bad input is a 400 naming the field, never a 500."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.capacity.models import CapacitySearch, Status
from apps.workloads import services as workload_services
from tests.capacity.ui_helpers import SLO, add_probe, finish, queued_fixture, search_for, sim  # noqa: F401
from tests.factories import DeploymentFactory, HardwareProfileFactory, ModelVariantFactory
from tests.workloads.test_api import SYNTHETIC

pytestmark = pytest.mark.django_db
URL = "/api/v1/capacity"


def body(team, **fields) -> dict:
    return {
        "name": "api search", "endpoint": sim(team).pk, "model": "sim-small",
        "variant": ModelVariantFactory(team=team).pk, "slo": SLO, "start_level": 2, "max_level": 64,
    } | fields  # fmt: skip


def problems(response) -> set[str]:
    """The fields a 400 names (every error body also carries its request id)."""
    return set(response.json()) - {"request_id"}


def set_status(search, status) -> CapacitySearch:
    CapacitySearch.objects.filter(pk=search.pk).update(status=status)
    search.refresh_from_db()
    return search


class TestList:
    def test_it_lists_the_teams_searches_newest_first(self, member_api, team, other_team):
        older, newer = search_for(team, name="older"), search_for(team, name="newer")
        search_for(other_team, name="theirs")
        data = member_api.get(URL).json()
        assert [row["id"] for row in data["results"]] == [newer.pk, older.pk]
        assert data["results"][0]["slo_text"] == "p95 TTFT ≤ 500 ms, p95 TPOT ≤ 50 ms, errors ≤ 1%"
        assert data["results"][0]["unit"] == "req/s" and "state" not in data["results"][0]

    def test_it_filters_by_status_and_endpoint(self, member_api, team):
        done = finish(search_for(team, name="done"))
        other_endpoint = search_for(team, name="elsewhere", endpoint=sim(team, "sim-2"))
        assert [r["id"] for r in member_api.get(f"{URL}?status=completed").json()["results"]] == [done.pk]
        ids = [r["id"] for r in member_api.get(f"{URL}?endpoint={other_endpoint.endpoint_id}").json()["results"]]
        assert ids == [other_endpoint.pk]
        for query in ("status=bogus", "endpoint=x", "endpoint=1.5", f"endpoint={10**30}", "endpoint=-2.8e167"):
            assert member_api.get(f"{URL}?{query}").status_code == 400, query

    def test_it_refuses_anonymous(self, anon_api):
        assert anon_api.get(URL).status_code == 401

    def test_it_runs_a_constant_number_of_queries(self, member_api, team, django_assert_max_num_queries):
        for i in range(2):
            finish(search_for(team, name=f"s{i}"))
        member_api.get(URL)  # the token's first use writes last_used_at once
        with CaptureQueriesContext(connection) as few:
            assert member_api.get(URL).status_code == 200
        for i in range(10):
            finish(search_for(team, name=f"more{i}"))
        with django_assert_max_num_queries(len(few.captured_queries)):
            assert len(member_api.get(URL).json()["results"]) == 12


class TestCreate:
    def test_a_member_creates_a_pending_search_with_its_sweep(self, member_api, team, member):
        hardware, deployment = HardwareProfileFactory(team=team), DeploymentFactory(team=team)
        workload = workload_services.workload_create(team=team, user=member, name="chat", spec=SYNTHETIC)
        response = member_api.post(URL, body(team, hardware=hardware.pk, deployment=deployment.pk,
                                              workload_version=workload.latest.pk, repetitions=2), format="json")  # fmt: skip
        assert response.status_code == 201, response.json()
        data = response.json()
        search = CapacitySearch.objects.get(pk=data["id"])
        assert search.team == team and search.created_by == member and search.status == Status.PENDING
        assert search.sweep.managed_by == "capacity" and search.workload_version == workload.latest
        assert search.is_simulated and search.repetitions == 2 and search.tolerance == 0.05  # a default
        # The SLO is stored in its normal form.
        assert search.slo["confidence"] == 0.95 and search.slo["attainment"] is None
        assert data["state"]["status_label"] == "waiting to start" and data["state"]["actions"]["start"]

    def test_start_true_queues_it(self, member_api, team, queued, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=True):
            response = member_api.post(URL, body(team, start=True), format="json")
        assert response.status_code == 201
        assert queued == [("apps.capacity.tasks.capacity_run", response.json()["id"])]

    def test_a_viewer_cannot_create(self, viewer_api, team):
        assert viewer_api.post(URL, body(team), format="json").status_code == 403
        assert not CapacitySearch.objects.exists()

    def test_anonymous_cannot_create(self, anon_api, team):
        assert anon_api.post(URL, body(team), format="json").status_code == 401

    def test_another_teams_endpoint_variant_and_workload_are_refused(self, member_api, team, other_team, outsider):
        workload = workload_services.workload_create(team=other_team, user=outsider, name="theirs", spec=SYNTHETIC)
        for field, value in (("endpoint", sim(other_team).pk), ("variant", ModelVariantFactory(team=other_team).pk),
                             ("hardware", HardwareProfileFactory(team=other_team).pk),
                             ("workload_version", workload.latest.pk)):  # fmt: skip
            response = member_api.post(URL, body(team, **{field: value}), format="json")
            assert response.status_code == 400 and problems(response) == {field}, field
        assert not CapacitySearch.objects.filter(team=team).exists()

    @pytest.mark.parametrize(
        ("slo", "field"),
        [
            ({"objectives": [], "max_error_rate": 0.01}, "slo.objectives"),
            ({"objectives": [{"metric": "ttfb_ms", "percentile": 95, "max_ms": 500}]}, "slo.objectives[0].metric"),
            ({"objectives": [{"metric": "ttft_ms", "percentile": 97, "max_ms": 500}]}, "slo.objectives[0].percentile"),
            ({"objectives": [{"metric": "ttft_ms", "percentile": 95, "max_ms": -5}]}, "slo.objectives[0].max_ms"),
            ({"objectives": [{"metric": "ttft_ms", "percentile": 95, "max_ms": "fast"}]}, "slo.objectives[0].max_ms"),
            ({"objectives": [SLO["objectives"][0], SLO["objectives"][0]]}, "slo.objectives[1]"),
            ({"objectives": "ttft"}, "slo.objectives"),
            ({"objectives": ["ttft"]}, "slo.objectives[0]"),
            ({**SLO, "max_error_rate": 1.5}, "slo.max_error_rate"),
            ({**SLO, "attainment": 2}, "slo.attainment"),
            ({**SLO, "confidence": 0.5}, "slo.confidence"),
            ({**SLO, "deadline": 3}, "slo"),
            ("p95 ttft under 500", "slo"),
        ],
    )
    def test_each_kind_of_slo_error_names_its_field(self, member_api, team, slo, field):
        response = member_api.post(URL, body(team, slo=slo), format="json")
        assert response.status_code == 400 and field in response.json(), response.json()
        assert isinstance(response.json()[field][0], str)

    @pytest.mark.parametrize(
        ("fields", "field"),
        [
            ({"start_level": 10, "max_level": 5}, "max_level"),
            ({"space": "concurrency", "start_level": 2.5}, "start_level"),
            ({"space": "concurrency", "start_level": 4, "max_level": 16.5}, "max_level"),
            ({"space": "concurrency", "start_level": 2, "shards": 4}, "shards"),
            ({"start_level": "many"}, "start_level"),
            ({"start_level": 0}, "start_level"),
            ({"max_level": 10**9}, "max_level"),
            ({"tolerance": 0.9}, "tolerance"),
            ({"probe_duration_s": 0}, "probe_duration_s"),
            ({"repetitions": 1.5}, "repetitions"),
            ({"repetitions": 50}, "repetitions"),
            ({"max_probes": 1}, "max_probes"),
            ({"space": "tokens"}, "space"),
            ({"model": " "}, "model"),
            ({"endpoint": 10**9}, "endpoint"),
            ({"endpoint": "x"}, "endpoint"),
            ({"name": ""}, "name"),
        ],
    )
    def test_bad_settings_are_400s_naming_the_field(self, member_api, team, fields, field):
        response = member_api.post(URL, body(team, **fields), format="json")
        assert response.status_code == 400 and field in response.json(), response.json()


class TestDetail:
    def test_it_shows_the_search_with_its_progress(self, viewer_api, team):
        search = search_for(team)
        add_probe(search, 0, 8, "pass")
        add_probe(search, 1, 16, "fail", phase="ramp")
        data = viewer_api.get(f"{URL}/{search.pk}").json()
        state = data["state"]
        assert data["name"] == search.name and state["probes_used"] == 2
        assert state["bracket"] == {"low": 8.0, "high": 16.0}
        assert [p["verdict_label"] for p in state["probes"]] == ["meets the SLO", "misses the SLO"]

    def test_another_teams_search_is_404(self, member_api, other_team):
        assert member_api.get(f"{URL}/{search_for(other_team).pk}").status_code == 404

    def test_anonymous_is_401(self, anon_api, team):
        assert anon_api.get(f"{URL}/{search_for(team).pk}").status_code == 401


class TestActions:
    def test_start_queues_a_pending_search(self, member_api, team, queued, django_capture_on_commit_callbacks):
        search = search_for(team)
        with django_capture_on_commit_callbacks(execute=True):
            response = member_api.post(f"{URL}/{search.pk}/start")
        assert response.status_code == 200 and queued == [("apps.capacity.tasks.capacity_run", search.pk)]

    def test_start_refuses_a_completed_search(self, member_api, team, queued):
        response = member_api.post(f"{URL}/{finish(search_for(team)).pk}/start")
        assert response.status_code == 409 and "completed" in response.json()["detail"]

    def test_resume_takes_up_a_failed_search(self, member_api, team, queued):
        search = set_status(search_for(team), Status.FAILED)
        response = member_api.post(f"{URL}/{search.pk}/resume")
        assert response.status_code == 200 and response.json()["status"] == Status.PENDING

    def test_resume_refuses_a_pending_search(self, member_api, team, queued):
        response = member_api.post(f"{URL}/{search_for(team).pk}/resume")
        assert response.status_code == 409 and "failed or cancelled" in response.json()["detail"]

    def test_cancel_stops_a_running_search(self, member_api, team):
        search = set_status(search_for(team), Status.RUNNING)
        response = member_api.post(f"{URL}/{search.pk}/cancel")
        assert response.status_code == 200 and response.json()["cancel_requested"] is True
        search.sweep.refresh_from_db()
        assert search.sweep.cancel_requested

    @pytest.mark.parametrize("action", ["start", "resume", "cancel"])
    def test_a_viewer_cannot_act(self, viewer_api, team, action, queued):
        search = set_status(search_for(team), Status.FAILED)
        assert viewer_api.post(f"{URL}/{search.pk}/{action}").status_code == 403
        search.refresh_from_db()
        assert search.status == Status.FAILED and not search.cancel_requested

    @pytest.mark.parametrize("action", ["start", "resume", "cancel"])
    def test_anonymous_and_other_teams_cannot_act(self, anon_api, member_api, other_team, action):
        search = set_status(search_for(other_team), Status.FAILED)
        assert anon_api.post(f"{URL}/{search.pk}/{action}").status_code == 401
        assert member_api.post(f"{URL}/{search.pk}/{action}").status_code == 404

    def test_actions_answer_only_post(self, member_api, team):
        assert member_api.get(f"{URL}/{search_for(team).pk}/start").status_code == 405


class TestDelete:
    def test_a_member_deletes_a_finished_search(self, member_api, team):
        search = finish(search_for(team))
        add_probe(search, 0, 8, "pass")
        assert member_api.delete(f"{URL}/{search.pk}").status_code == 204
        assert not CapacitySearch.objects.filter(pk=search.pk).exists()

    def test_a_running_search_is_409(self, member_api, team):
        search = set_status(search_for(team), Status.RUNNING)
        response = member_api.delete(f"{URL}/{search.pk}")
        assert response.status_code == 409 and "Cancel" in response.json()["detail"]
        assert CapacitySearch.objects.filter(pk=search.pk).exists()

    def test_viewer_anonymous_and_other_team_cannot_delete(self, viewer_api, anon_api, member_api, team, other_team):
        mine, theirs = search_for(team), search_for(other_team)
        assert viewer_api.delete(f"{URL}/{mine.pk}").status_code == 403
        assert anon_api.delete(f"{URL}/{mine.pk}").status_code == 401
        assert member_api.delete(f"{URL}/{theirs.pk}").status_code == 404
        assert CapacitySearch.objects.count() == 2


def first_event(response) -> dict:
    text = b"".join(response).decode()
    assert text.startswith("event: progress\n")
    return json.loads(text.split("data: ", 1)[1].split("\n", 1)[0])


class TestProgressStream:
    def test_the_first_event_carries_the_progress(self, viewer_api, team):
        search = finish(search_for(team))
        add_probe(search, 0, 8, "pass")
        response = viewer_api.get(f"{URL}/{search.pk}/progress")
        assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
        payload = first_event(response)
        assert payload["status"] == "completed" and payload["probes_used"] == 1
        assert payload["result"]["capacity"] == 41.8 and payload["probes"][0]["verdict"] == "pass"

    def test_a_running_search_streams_its_running_probe(self, member_api, team, monkeypatch):
        monkeypatch.setattr("llmbench.sse.SSE_MAX_S", 0)  # one event, then the stream ends
        search = set_status(search_for(team), Status.RUNNING)
        search.sweep.steps.create(index=0, level=8, status=Status.RUNNING)
        search.sweep.progress = {"requests_done": 12}
        search.sweep.save(update_fields=["progress"])
        payload = first_event(member_api.get(f"{URL}/{search.pk}/progress"))
        assert payload["status"] == "running" and payload["running"]["level"] == 8.0
        assert payload["running"]["live"]["requests_done"] == 12

    def test_it_refuses_anonymous_and_other_teams(self, anon_api, member_api, other_team):
        theirs = finish(search_for(other_team))
        anonymous = anon_api.get(f"{URL}/{theirs.pk}/progress")
        assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"] == "Token"
        missing = member_api.get(f"{URL}/{theirs.pk}/progress")
        assert missing.status_code == 404 and missing.json()["detail"]

    def test_it_answers_get_only(self, member_api, team):
        assert member_api.post(f"{URL}/{search_for(team).pk}/progress").status_code == 405


class TestCompare:
    def test_overlapping_brackets_with_a_goodput_test(self, viewer_api, team):
        a, b = search_for(team, name="a"), search_for(team, name="b")
        for i, goodput in enumerate((38.0, 39.0, 40.0)):
            add_probe(a, i, 40.1, "pass", trial=i, goodput=goodput)
        for i, goodput in enumerate((30.0, 31.0)):
            add_probe(b, i, 40.1, "pass", trial=i, goodput=goodput)
        finish(a)
        finish(b, capacity=42.0, low=41.0, high=44.0)
        data = viewer_api.get(f"{URL}/compare?a={a.pk}&b={b.pk}").json()
        assert data["a"]["capacity"] == 41.8 and data["b"]["capacity"] == 42.0
        assert data["overlap"] is True
        assert data["overlap_text"] == "The brackets overlap: the difference is within the search tolerance."
        # Goodput at B's capacity level (41.0): B has no trials there, A has three at 40.1.
        assert data["goodput_test"] is None and "A has 3, B has 0" in data["goodput_test_text"]

    def test_separate_brackets_and_welch_on_goodput_at_capacity(self, member_api, team):
        a, b = search_for(team, name="a"), search_for(team, name="b")
        for i, goodput in enumerate((50.0, 52.0, 51.0)):
            add_probe(a, i, 60, "pass", trial=i, goodput=goodput)
        add_probe(a, 3, 66, "fail")
        for i, goodput in enumerate((30.0, 31.0, 29.5)):
            add_probe(b, i, 32, "pass", trial=i, goodput=goodput)
        finish(a, capacity=60, low=60, high=66)
        finish(b, capacity=32, low=32, high=35)
        data = member_api.get(f"{URL}/compare?a={a.pk}&b={b.pk}").json()
        assert data["overlap"] is False and data["overlap_text"] == "A's bracket lies above B's."
        test = data["goodput_test"]
        assert test["n_a"] == 3 and test["n_b"] == 3 and test["mean_a"] == pytest.approx(51.0)
        assert test["significant"] and test["p_value"] < 0.001 and test["verdict"].startswith("A is higher than B")
        flipped = member_api.get(f"{URL}/compare?a={b.pk}&b={a.pk}").json()
        assert flipped["overlap_text"] == "B's bracket lies above A's."

    def test_a_search_without_capacity_has_no_overlap(self, member_api, team):
        a, b = finish(search_for(team, name="a")), search_for(team, name="b")
        data = member_api.get(f"{URL}/compare?a={a.pk}&b={b.pk}").json()
        assert data["overlap"] is None and data["overlap_text"] == "B has no capacity yet."

    def test_bad_ids_are_400_and_other_teams_404(self, member_api, anon_api, team, other_team):
        mine, theirs = search_for(team), search_for(other_team)
        response = member_api.get(f"{URL}/compare?a={mine.pk}&b=x")
        assert response.status_code == 400 and problems(response) == {"b"}
        assert member_api.get(f"{URL}/compare").status_code == 400
        assert member_api.get(f"{URL}/compare?a={mine.pk}&b={theirs.pk}").status_code == 404
        assert anon_api.get(f"{URL}/compare?a={mine.pk}&b={mine.pk}").status_code == 401
