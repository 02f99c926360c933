"""The capacity pages: list, new-search form, live detail page and its partial, start / resume / cancel /
delete, and the comparison, by role and team; problems are shown in words next to their field."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.capacity.models import CapacitySearch, Status
from tests.capacity.ui_helpers import add_probe, finish, queued_fixture, search_for, sim  # noqa: F401
from tests.factories import HardwareProfileFactory, ModelVariantFactory
from tests.hardware.helpers import stored_run

pytestmark = pytest.mark.django_db


def set_status(search, status) -> CapacitySearch:
    CapacitySearch.objects.filter(pk=search.pk).update(status=status)
    search.refresh_from_db()
    return search


def form_data(team, **fields) -> dict:
    endpoint = sim(team)
    return {
        "name": "page search", "target": f"{endpoint.pk}:sim-small", "variant": ModelVariantFactory(team=team).pk,
        "hardware": "", "deployment": "", "workload": "", "prompt_tokens": 256, "output_tokens": 128,
        "objective_metric": ["ttft_ms", "tpot_ms"], "objective_percentile": ["95", "99"],
        "objective_max_ms": ["500", "50"], "max_error_rate_pct": "1", "attainment_pct": "", "confidence": "0.95",
        "space": "rate", "arrivals": "poisson", "start_level": "2", "max_level": "64", "tolerance_pct": "5",
        "probe_duration_s": "20", "warmup_s": "0", "repetitions": "1", "max_extra_trials": "2", "max_probes": "24",
        "shards": "1", "seed": "0",
    } | fields  # fmt: skip


class TestList:
    def test_it_shows_the_answer_in_words(self, viewer_client, team, other_team):
        done = finish(search_for(team, name="found one", hardware=HardwareProfileFactory(team=team, name="h100")))
        search_for(team, name="waiting one")
        search_for(other_team, name="their search")
        page = viewer_client.get(reverse("capacity:list")).content.decode()
        assert "found one" in page and "waiting one" in page and "their search" not in page
        assert page.index("waiting one") < page.index("found one")  # newest first
        assert "41.8 req/s [40.1, 43.5]" in page and "$0.37" in page
        assert "p95 TTFT ≤ 500 ms, p95 TPOT ≤ 50 ms, errors ≤ 1%" in page
        assert f"{done.variant} · h100" in page and "waiting to start" in page and "simulated" in page

    def test_it_filters_by_status(self, viewer_client, team):
        finish(search_for(team, name="found one"))
        search_for(team, name="waiting one")
        page = viewer_client.get(reverse("capacity:list") + "?status=completed").content.decode()
        assert "found one" in page and "waiting one" not in page

    def test_it_says_why_there_is_no_cost(self, viewer_client, team):
        finish(search_for(team, hardware=HardwareProfileFactory(team=team, hourly_cost_usd=None)), cost=None)
        assert "no hourly cost on the hardware" in viewer_client.get(reverse("capacity:list")).content.decode()

    def test_anonymous_is_sent_to_log_in(self, client):
        response = client.get(reverse("capacity:list"))
        assert response.status_code == 302 and "/login/" in response["Location"]

    def test_it_runs_a_constant_number_of_queries(self, member_client, team, django_assert_max_num_queries):
        for i in range(2):
            finish(search_for(team, name=f"s{i}"))
        with CaptureQueriesContext(connection) as few:
            assert member_client.get(reverse("capacity:list")).status_code == 200
        for i in range(10):
            finish(search_for(team, name=f"more{i}"))
        with django_assert_max_num_queries(len(few.captured_queries)):
            assert member_client.get(reverse("capacity:list")).status_code == 200


class TestNew:
    def test_the_form_offers_the_teams_choices_and_two_default_thresholds(self, member_client, team, other_team):
        sim(team, "ours")
        sim(other_team, "theirs")
        page = member_client.get(reverse("capacity:new")).content.decode()
        assert "ours · sim-small" in page and "theirs" not in page
        assert page.count('name="objective_max_ms"') == 3  # two rows and the template of a new one
        assert "TTFT (time to first token)" in page and "Share of requests meeting all of them" in page

    def test_a_member_creates_and_starts_a_search(
        self, member_client, team, queued, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            response = member_client.post(reverse("capacity:new"), form_data(team, start="1", attainment_pct="90"))
        search = CapacitySearch.objects.get()
        assert response.status_code == 302 and response["Location"] == reverse("capacity:detail", args=[search.pk])
        assert search.slo == {
            "objectives": [{"metric": "ttft_ms", "percentile": 95, "max_ms": 500.0},
                           {"metric": "tpot_ms", "percentile": 99, "max_ms": 50.0}],
            "max_error_rate": 0.01, "attainment": 0.9, "confidence": 0.95,
        }  # fmt: skip
        assert search.tolerance == 0.05 and search.probe_duration_s == 20 and search.model == "sim-small"
        assert queued == [("apps.capacity.tasks.capacity_run", search.pk)]

    @pytest.mark.parametrize(
        ("fields", "shown"),
        [
            ({"objective_max_ms": ["-3", "50"]}, "Most milliseconds: Must be a number of milliseconds above 0."),
            ({"objective_max_ms": ["fast", "50"]}, "Most milliseconds: Must be a number of milliseconds above 0."),
            ({"objective_metric": ["ttft_ms", "ttft_ms"], "objective_percentile": ["95", "95"]},
             "The same metric and percentile twice."),
            ({"objective_metric": ["bogus", "tpot_ms"]}, "Metric: Must be one of"),
            ({"objective_metric": [], "objective_percentile": [], "objective_max_ms": []},
             "Give at least one latency objective"),
            ({"start_level": "10", "max_level": "5"}, "Must be at least the start level."),
            ({"space": "concurrency", "start_level": "2.5"}, "A concurrency must be a whole number of at least 1."),
            ({"tolerance_pct": "90"}, "Must be between 0.005 and 0.5."),
            ({"max_error_rate_pct": "150"}, "Must be a share from 0 up to"),
            ({"confidence": "0.5"}, "Select a valid choice."),
            ({"start_level": "lots"}, "Enter a number."),
        ],
    )  # fmt: skip
    def test_problems_are_shown_in_words_next_to_their_field(self, member_client, team, fields, shown):
        response = member_client.post(reverse("capacity:new"), form_data(team, **fields))
        assert response.status_code == 400 and not CapacitySearch.objects.exists()
        assert shown in response.content.decode()

    def test_a_level_problem_sits_by_its_field(self, member_client, team):
        response = member_client.post(reverse("capacity:new"), form_data(team, start_level="10", max_level="5"))
        field = response.content.decode().split('id="field-max_level"', 1)[1].split('id="field-', 1)[0]
        assert "Must be at least the start level." in field

    def test_another_teams_choices_are_refused(self, member_client, team, other_team):
        theirs = sim(other_team, "theirs")
        response = member_client.post(reverse("capacity:new"), form_data(
            team, target=f"{theirs.pk}:sim-small", variant=ModelVariantFactory(team=other_team).pk))  # fmt: skip
        assert response.status_code == 400 and not CapacitySearch.objects.exists()
        assert response.context["form"].errors.keys() >= {"target", "variant"}

    def test_a_viewer_sees_the_form_but_cannot_create(self, viewer_client, team):
        assert viewer_client.get(reverse("capacity:new")).status_code == 200
        assert viewer_client.post(reverse("capacity:new"), form_data(team)).status_code == 403
        assert not CapacitySearch.objects.exists()

    def test_anonymous_is_sent_to_log_in(self, client, team):
        response = client.post(reverse("capacity:new"), form_data(team))
        assert response.status_code == 302 and "/login/" in response["Location"]


class TestDetail:
    def test_a_found_search_says_its_answer_in_one_sentence(self, viewer_client, team):
        search = search_for(team)
        run = stored_run(team, samples=[])
        add_probe(search, 0, 8, "pass", run=run)
        add_probe(search, 1, 16, "saturated", saturation=["requests in flight kept growing (4 early, 40 late)"])
        add_probe(search, 2, 12, "undecided", phase="bisect")
        add_probe(search, 3, 12, "undecided", phase="extend", trial=1)
        finish(search)
        page = viewer_client.get(reverse("capacity:detail", args=[search.pk])).content.decode()
        assert ("Capacity 41.8 req/s [40.1, 43.5] at p95 TTFT ≤ 500 ms, p95 TPOT ≤ 50 ms, errors ≤ 1% — $0.37 per 1M "
                "output tokens") in page  # fmt: skip
        assert "Output tokens per second per GPU" in page and "5,000 tok/s" in page
        assert "Goodput, 95% interval over 3 trials" in page and "38.50 to 41.50 req/s" in page
        assert "Limited by p95 TTFT ≤ 500 ms." in page and "$0.37 (h100 at $2 per hour)" in page
        assert "Probes at 12 req/s stayed undecided after 2 trials; they count as missing the SLO." in page
        assert "p95 TTFT ≤ 500 ms: 96.2% [94.1, 97.6]" in page and "requests in flight kept growing" in page
        assert "extra trial" in page and "server saturated" in page and "bisect" in page
        assert f'href="/performance/runs/{run.pk}/"' in page
        assert page.count('class="point verdict-') == 8  # a dot per probe in each chart
        assert 'class="threshold"' in page and 'class="bracket"' in page
        assert "EventSource" in page and f"/api/v1/capacity/{search.pk}/progress" in page

    def test_the_chart_plots_the_slos_first_objective_against_its_threshold(self, viewer_client, team):
        slo = {"objectives": [{"metric": "tpot_ms", "percentile": 95, "max_ms": 50}], "max_error_rate": 0.01}
        search = search_for(team, slo=slo)
        add_probe(search, 0, 10, "pass")  # tpot_p95_ms 30 in every probe
        add_probe(search, 1, 20, "fail")
        page = viewer_client.get(reverse("capacity:live", args=[search.pk])).content.decode()
        chart = page.split('id="latency-chart"', 1)[1].split("</svg>", 1)[0]
        assert "p95 TPOT (ms)" in chart and "SLO 50 ms" in chart
        y_of = lambda css: float(chart.split(f'class="{css}"', 1)[0].rsplit('cy="', 1)[1].split('"', 1)[0])  # noqa: E731
        threshold_y = float(chart.split('class="threshold"', 1)[0].rsplit('y1="', 1)[1].split('"', 1)[0])
        assert y_of("point verdict-pass") > threshold_y  # 30 ms is drawn below the 50 ms line (SVG y grows down)

    def test_the_cost_says_why_it_is_missing(self, viewer_client, team):
        search = finish(search_for(team, hardware=None), cost=None)
        page = viewer_client.get(reverse("capacity:detail", args=[search.pk])).content.decode()
        assert "— no cost: no hourly cost on the hardware and no token prices on the endpoint" in page

    def test_without_a_capacity_it_says_why(self, viewer_client, team):
        search = finish(search_for(team), capacity=None, low=None, high=8, cost=None,
                        note="Even the lowest level probed missed the SLO.")  # fmt: skip
        page = viewer_client.get(reverse("capacity:detail", args=[search.pk])).content.decode()
        assert "No capacity within p95 TTFT ≤ 500 ms, p95 TPOT ≤ 50 ms, errors ≤ 1%: even the lowest level" in page

    def test_an_open_top_end_says_at_least(self, viewer_client, team):
        search = finish(search_for(team), capacity=64, low=64, high=None)
        page = viewer_client.get(reverse("capacity:detail", args=[search.pk])).content.decode()
        assert "Capacity at least 64 req/s (the highest level probed still met the SLO)" in page

    def test_buttons_follow_the_status_and_role(self, viewer_client, member_client, team, member):
        search = search_for(team)
        page = member_client.get(reverse("capacity:detail", args=[search.pk])).content.decode()
        assert 'id="start-button"' in page and 'id="cancel-button"' in page and 'id="resume-button"' not in page
        set_status(search, Status.FAILED)
        page = member_client.get(reverse("capacity:detail", args=[search.pk])).content.decode()
        assert 'id="resume-button"' in page and 'id="start-button"' not in page
        member_client.logout()
        page = viewer_client.get(reverse("capacity:detail", args=[search.pk])).content.decode()
        assert 'id="resume-button"' not in page and 'id="capacity-actions"' not in page

    def test_a_running_search_says_where_it_stands(self, viewer_client, team):
        search = set_status(search_for(team), Status.RUNNING)
        add_probe(search, 0, 8, "pass")
        add_probe(search, 1, 16, "fail")
        search.sweep.steps.create(index=2, level=12, status=Status.RUNNING)
        page = viewer_client.get(reverse("capacity:live", args=[search.pk])).content.decode()
        assert "So far the capacity lies between 8 and 16 req/s; 2 of at most 24 probes used." in page
        assert "Probing 12 req/s, trial 1" in page and 'data-running-level="12.0"' in page
        assert 'id="capacity-figures"' not in page  # no figures at capacity before the answer

    def test_the_live_partial_is_the_live_section_only(self, viewer_client, team):
        search = search_for(team)
        add_probe(search, 0, 8, "pass")
        response = viewer_client.get(reverse("capacity:live", args=[search.pk]), headers={"HX-Request": "true"})
        html = response.content.decode()
        assert html.strip().startswith('<section id="capacity-live"') and "<html" not in html
        assert 'data-probes="1"' in html and "meets the SLO" in html

    def test_another_teams_search_is_404(self, member_client, other_team):
        search = search_for(other_team)
        assert member_client.get(reverse("capacity:detail", args=[search.pk])).status_code == 404
        assert member_client.get(reverse("capacity:live", args=[search.pk])).status_code == 404

    def test_anonymous_is_sent_to_log_in(self, client, team):
        response = client.get(reverse("capacity:detail", args=[search_for(team).pk]))
        assert response.status_code == 302 and "/login/" in response["Location"]


class TestActions:
    def test_start_queues_and_says_so(self, member_client, team, queued, django_capture_on_commit_callbacks):
        search = search_for(team)
        with django_capture_on_commit_callbacks(execute=True):
            response = member_client.post(reverse("capacity:start", args=[search.pk]), follow=True)
        assert "The search is queued." in response.content.decode()
        assert queued == [("apps.capacity.tasks.capacity_run", search.pk)]

    def test_cancel_and_resume(self, member_client, team, queued):
        search = set_status(search_for(team), Status.RUNNING)
        member_client.post(reverse("capacity:cancel", args=[search.pk]))
        search.refresh_from_db()
        assert search.cancel_requested
        set_status(search, Status.CANCELLED)
        member_client.post(reverse("capacity:resume", args=[search.pk]))
        search.refresh_from_db()
        assert search.status == Status.PENDING and not search.cancel_requested

    def test_a_refusal_is_a_message_not_an_error(self, member_client, team):
        search = finish(search_for(team))
        response = member_client.post(reverse("capacity:start", args=[search.pk]), follow=True)
        assert response.status_code == 200 and "only a pending, failed or cancelled search can start" in (
            response.content.decode()
        )

    def test_delete_removes_a_finished_search_but_not_a_running_one(self, member_client, team):
        running = set_status(search_for(team, name="running"), Status.RUNNING)
        response = member_client.post(reverse("capacity:delete", args=[running.pk]), follow=True)
        assert "Cancel the search before deleting it." in response.content.decode()
        done = finish(search_for(team, name="done"))
        response = member_client.post(reverse("capacity:delete", args=[done.pk]))
        assert response.status_code == 302 and response["Location"] == reverse("capacity:list")
        assert list(CapacitySearch.objects.values_list("name", flat=True)) == ["running"]

    @pytest.mark.parametrize("action", ["start", "resume", "cancel", "delete"])
    def test_a_viewer_cannot_act(self, viewer_client, team, action):
        search = set_status(search_for(team), Status.FAILED)
        assert viewer_client.post(reverse(f"capacity:{action}", args=[search.pk])).status_code == 403
        search.refresh_from_db()
        assert search.status == Status.FAILED and not search.cancel_requested

    def test_wrong_method_anonymous_and_other_team(self, member_client, client, team, other_team):
        mine, theirs = search_for(team), search_for(other_team)
        assert member_client.get(reverse("capacity:start", args=[mine.pk])).status_code == 405
        assert member_client.post(reverse("capacity:cancel", args=[theirs.pk])).status_code == 404
        member_client.logout()
        response = client.post(reverse("capacity:cancel", args=[mine.pk]))
        assert response.status_code == 302 and "/login/" in response["Location"]


class TestCompare:
    def test_it_compares_two_searches_in_words(self, viewer_client, team):
        a, b = finish(search_for(team, name="first")), finish(search_for(team, name="second"), low=50, high=55)
        url = reverse("capacity:compare") + f"?a={a.pk}&b={b.pk}"
        page = viewer_client.get(url).content.decode()
        assert "first" in page and "second" in page and "B&#x27;s bracket lies above A&#x27;s." in page
        assert "No test of goodput: each search needs 2 or more trials" in page

    def test_the_picker_lists_only_the_teams_searches(self, viewer_client, team, other_team):
        search_for(team, name="ours")
        theirs = search_for(other_team, name="theirs")
        page = viewer_client.get(reverse("capacity:compare")).content.decode()
        assert "ours" in page and "theirs" not in page
        response = viewer_client.get(reverse("capacity:compare") + f"?a={theirs.pk}&b=x")
        assert response.status_code == 400 and "Choose two of the team&#x27;s capacity searches." in (
            response.content.decode()
        )

    def test_anonymous_is_sent_to_log_in(self, client):
        response = client.get(reverse("capacity:compare"))
        assert response.status_code == 302 and "/login/" in response["Location"]
