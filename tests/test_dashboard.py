"""The dashboard (home page): running jobs, the latest runs, experiments and batches, this month's
cost per endpoint against the team's budget, test cases to review for admins; a bounded number of
queries; and the websocket that keeps the running jobs live."""

import asyncio
import threading
from datetime import timedelta
from importlib import import_module

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.accounts.models import Membership
from apps.accounts.services import ACTIVE_TEAM_SESSION_KEY
from apps.batches.models import Batch
from apps.batches.services import batch_start, sweep_create
from apps.experiments.models import Experiment, Response, TestCase
from apps.experiments.services import experiment_create, testcase_create
from llmbench.dashboard import month_start_utc, running_jobs
from tests.batches.helpers import make_batch, run_until_done, sim_endpoint
from tests.factories import MembershipFactory, ModelVariantFactory, UserFactory
from tests.hardware.helpers import stored_run
from tests.threaded import closing_connection

pytestmark = pytest.mark.django_db

HOME = reverse("home")


@pytest.fixture
def queued(monkeypatch):
    """The chunk tasks batch_start queues, recorded instead of queued (the test runs the worker)."""
    calls: list[tuple] = []
    monkeypatch.setattr("apps.batches.services.job_submit", lambda **kw: calls.append((kw["func"], *kw["args"])))
    return calls


def priced_responses(team, endpoint_name: str, costs: list[float], *, last_month: bool = False) -> Experiment:
    """An experiment of `team` on a new sim endpoint with one response per cost."""
    endpoint = sim_endpoint(team, name=endpoint_name)
    experiment = experiment_create(team=team, user=None, name=f"{endpoint_name} run",
                                   targets=[(endpoint, "sim-small")], prompt="p")  # fmt: skip
    target = experiment.targets.get()
    for i, cost in enumerate(costs):
        Response.objects.create(experiment=experiment, target=target, item_key="prompt", repetition=i, cost_usd=cost)
    if last_month:
        Response.objects.filter(experiment=experiment).update(created_at=month_start_utc() - timedelta(hours=1))
    return experiment


class TestPage:
    def test_anonymous_is_sent_to_log_in(self, client):
        response = client.get(HOME)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))

    def test_a_user_without_a_team_is_told_to_ask_for_one(self, client):
        client.force_login(UserFactory())
        response = client.get(HOME)
        assert response.status_code == 200
        assert b"not a member of any team" in response.content and b'id="running-jobs"' not in response.content
        assert b"js/dashboard.js" not in response.content

    def test_every_tile_links_to_its_page(self, admin_client_team):
        content = admin_client_team.get(HOME).content.decode()
        for url in [reverse("hardware:runs"), reverse("experiments:list"), reverse("batches:sweeps"),
                    reverse("providers:list"), reverse("admin:experiments_testcase_changelist"),
                    reverse("analytics:view", args=["quality-trends"]), reverse("analytics:view", args=["regressions"])]:  # fmt: skip
            assert f'href="{url}' in content
        assert 'data-ws-path="/ws/dashboard/"' in content

    def test_cost_this_month_is_per_endpoint_and_leaves_out_last_month_and_other_teams(
        self, viewer_client, team, other_team
    ):
        priced_responses(team, "cheap", [0.25, 0.5])
        priced_responses(team, "dear", [2.0])
        priced_responses(team, "old", [100.0], last_month=True)
        priced_responses(other_team, "theirs", [50.0])
        response = viewer_client.get(HOME)
        cost = response.context["cost"]
        assert [(row.name, row.cost_usd, row.responses) for row in cost.by_endpoint] == [
            ("dear", 2.0, 1),
            ("cheap", 0.75, 2),
        ]
        assert cost.total_usd == pytest.approx(2.75) and cost.level == "none"
        content = response.content.decode()
        assert "$2.75" in content and "No monthly budget set" in content
        assert "old" not in [row.name for row in cost.by_endpoint] and "theirs" not in content

    def test_simulated_responses_cost_nothing_against_the_budget(self, viewer_client, team):
        """A simulated response's notional cost stays out of this month's spend."""
        priced_responses(team, "measured", [1.0])
        simulated = priced_responses(team, "simulator", [9.0])
        Response.objects.filter(experiment=simulated).update(is_simulated=True)
        cost = viewer_client.get(HOME).context["cost"]
        assert [(row.name, row.cost_usd) for row in cost.by_endpoint] == [("measured", 1.0)]

    @pytest.mark.parametrize(
        ("budget", "level", "text"),
        [(10.0, "ok", "$2.00 of $10.00 budget (20.0%)"), (2.5, "nearing", "(80.0%): nearing budget"),
         (2.0, "over", "(100.0%): over budget"), (1.0, "over", "(200.0%): over budget")],
    )  # fmt: skip
    def test_the_budget_warns_at_80_and_100_percent(self, viewer_client, team, budget, level, text):
        team.monthly_budget_usd = budget
        team.save()
        priced_responses(team, "sim", [1.5, 0.5])
        response = viewer_client.get(HOME)
        assert response.context["cost"].level == level
        content = response.content.decode()
        assert text in content
        assert ('class="budget-nearing message warning"' in content) == (level == "nearing")
        assert ('class="budget-over message error"' in content) == (level == "over")

    def test_pending_test_cases_are_counted_for_admins_only(self, client, team, other_team, admin_user, member, viewer):
        for title in ["a", "b"]:
            testcase_create(team=team, author=member, submit=True, title=title, prompt="p")
        testcase_create(team=team, author=member, title="draft", prompt="p")
        testcase_create(team=other_team, author=member, submit=True, title="theirs", prompt="p")
        client.force_login(admin_user)
        response = client.get(HOME)
        assert response.context["pending_testcases"] == 2
        assert b'id="pending-testcases"' in response.content and b"status__exact=pending" in response.content
        for user in [member, viewer]:
            client.force_login(user)
            response = client.get(HOME)
            assert response.context["pending_testcases"] is None
            assert b'id="pending-testcases"' not in response.content

    def test_latest_lists_show_the_teams_newest_five(self, viewer_client, team, other_team):
        endpoint = sim_endpoint(team)
        for i in range(6):
            stored_run(team, samples=[], name=f"run-{i}")
            experiment_create(team=team, user=None, name=f"exp-{i}", targets=[(endpoint, "sim-small")], prompt="p")
            make_batch(team, endpoint=endpoint, name=f"batch-{i}")
        stored_run(other_team, samples=[], name="their-run")
        their_endpoint = sim_endpoint(other_team)
        experiment_create(team=other_team, user=None, name="their-exp", targets=[(their_endpoint, "sim-small")],
                          prompt="p")  # fmt: skip
        make_batch(other_team, endpoint=their_endpoint, name="their-batch")
        latest = viewer_client.get(HOME).context["latest"]
        assert [r.name for r in latest.runs] == [f"run-{i}" for i in range(5, 0, -1)]
        assert [e.name for e in latest.experiments] == [f"exp-{i}" for i in range(5, 0, -1)]  # sweeps not here
        assert [b.experiment.name for b in latest.batches] == [f"batch-{i}" for i in range(5, 0, -1)]

    def test_running_jobs_are_rendered_with_their_progress(self, viewer_client, team, other_team):
        batch = make_batch(team, repetitions=1)  # 6 results
        Experiment.objects.filter(pk=batch.pk).update(status="running")
        Batch.objects.filter(pk=batch.pk).update(completed_results=3)
        theirs = make_batch(other_team)
        Experiment.objects.filter(pk=theirs.pk).update(status="running")
        content = viewer_client.get(HOME).content.decode()
        assert f'data-job="batch-{batch.pk}"' in content and "3 of 6 results" in content
        assert 'value="50.0"' in content
        assert f'data-job="batch-{theirs.pk}"' not in content

    def test_the_page_runs_a_bounded_number_of_queries(self, admin_client_team, team, django_assert_max_num_queries):
        def grow(n):
            endpoint = sim_endpoint(team, name=f"sim-{Batch.objects.count()}")
            for i in range(n):
                stored_run(team, samples=[])
                experiment = priced_responses(team, f"e{n}-{i}-{Batch.objects.count()}", [0.1])
                Experiment.objects.filter(pk=experiment.pk).update(status="running")
                batch = make_batch(team, endpoint=endpoint)
                Experiment.objects.filter(pk=batch.pk).update(status="running")
                testcase_create(team=team, author=None, submit=True, title=f"t{i}", prompt="p")
                sweep_create(team=team, user=None, name="s", endpoint=endpoint, model="sim-small", status="running",
                             variant=ModelVariantFactory(team=team), levels=[1, 2], step_request_count=1)  # fmt: skip

        grow(1)
        with CaptureQueriesContext(connection) as few:
            assert admin_client_team.get(HOME).status_code == 200
        grow(8)
        with django_assert_max_num_queries(len(few.captured_queries)):
            response = admin_client_team.get(HOME)
        assert len(response.context["jobs"]) == 3 * 9
        # Session, user, membership; 5 counts; 3 running-job kinds; 4 latest lists; cost; pending; team switcher;
        # the quality trend (1) and regressions (experiment targets, their responses, performance runs).
        assert len(few.captured_queries) <= 22

    def test_team_admins_set_the_budget_in_the_admin(self, admin_client_team, team):
        url = reverse("admin:accounts_team_change", args=[team.pk])
        assert b'name="monthly_budget_usd"' in admin_client_team.get(url).content
        data = {"name": team.name, "slug": team.slug, "batch_confirm_requests": 1000, "batch_confirm_cost_usd": "",
                "monthly_budget_usd": "250"}  # fmt: skip
        assert admin_client_team.post(url, data).status_code == 302
        team.refresh_from_db()
        assert team.monthly_budget_usd == 250.0


def test_running_jobs_count_each_kind_of_progress(team):
    """Batches count results, load sweeps finished steps, experiments responses of targets × items × N."""
    endpoint = sim_endpoint(team)
    batch = make_batch(team, endpoint=endpoint, repetitions=1)
    Experiment.objects.filter(pk=batch.pk).update(status="running")
    Batch.objects.filter(pk=batch.pk).update(completed_results=2)
    sweep = sweep_create(team=team, user=None, name="load", endpoint=endpoint, model="sim-small", status="running",
                         variant=ModelVariantFactory(team=team), levels=[1, 2, 4, 8], step_request_count=1)  # fmt: skip
    sweep.steps.filter(index=0).update(status="completed")
    experiment = experiment_create(team=team, user=None, name="exp", targets=[(endpoint, "sim-small"), (endpoint, "b")],
                                   prompt="p", responses_per_item=3)  # fmt: skip
    Experiment.objects.filter(pk=experiment.pk).update(status="running")
    Response.objects.create(experiment=experiment, target=experiment.targets.first(), item_key="prompt")
    experiment_create(team=team, user=None, name="not started", targets=[(endpoint, "sim-small")], prompt="p")
    jobs = {f"{j['kind']}-{j['id']}": j for j in running_jobs(team)}
    assert set(jobs) == {f"batch-{batch.pk}", f"sweep-{sweep.pk}", f"experiment-{experiment.pk}"}
    assert (jobs[f"batch-{batch.pk}"]["completed"], jobs[f"batch-{batch.pk}"]["total"]) == (2, 6)
    assert jobs[f"sweep-{sweep.pk}"] | {"url": ""} == {
        "kind": "sweep", "id": sweep.pk, "name": "load", "status": "running", "progress": 25.0, "completed": 1,
        "total": 4, "unit": "steps", "url": "",
    }  # fmt: skip
    assert (jobs[f"experiment-{experiment.pk}"]["completed"], jobs[f"experiment-{experiment.pk}"]["total"]) == (1, 6)
    assert jobs[f"experiment-{experiment.pk}"]["url"] == reverse("experiments:detail", args=[experiment.pk])


def test_running_jobs_show_only_running_and_queued_jobs(viewer_client, team):
    """A finished batch, load sweep or experiment leaves "Running jobs" and is listed under "Latest" with its
    final status; a running one and a queued batch stay."""
    from django.utils import timezone

    from apps.batches.models import LoadSweep

    endpoint = sim_endpoint(team)
    running = running_batch(team, endpoint=endpoint, name="still running")
    queued = make_batch(team, endpoint=endpoint, name="queued")
    Batch.objects.filter(pk=queued.pk).update(queued_at=timezone.now())
    done = make_batch(team, endpoint=endpoint, name="done")
    Experiment.objects.filter(pk=done.pk).update(status="completed", finished_at=timezone.now())
    sweep = sweep_create(team=team, user=None, name="load done", endpoint=endpoint, model="sim-small",
                         variant=ModelVariantFactory(team=team), levels=[1], step_request_count=1)  # fmt: skip
    LoadSweep.objects.filter(pk=sweep.pk).update(status="completed", finished_at=timezone.now())
    experiment = experiment_create(team=team, user=None, name="exp done", targets=[(endpoint, "sim-small")], prompt="p")
    Experiment.objects.filter(pk=experiment.pk).update(status="completed", finished_at=timezone.now())
    jobs = {f"{j['kind']}-{j['id']}": j["status"] for j in running_jobs(team)}
    assert jobs == {f"batch-{running.pk}": "running", f"batch-{queued.pk}": "pending"}
    content = viewer_client.get(HOME).content.decode()
    tile = content.split('id="running-jobs"')[1].split("</ul>")[0]
    assert f'data-job="batch-{running.pk}"' in tile and f'data-job="batch-{done.pk}"' not in tile
    assert f'data-job="sweep-{sweep.pk}"' not in tile and f'data-job="experiment-{experiment.pk}"' not in tile
    latest_batches = content.split('id="latest-batches"')[1].split("</section>")[0]
    assert f'data-job="batch-{done.pk}"' in latest_batches and "status-completed" in latest_batches
    latest_sweeps = content.split('id="latest-sweeps"')[1].split("</section>")[0]
    assert f'data-job="sweep-{sweep.pk}"' in latest_sweeps and "load done" in latest_sweeps
    assert (
        f'data-job="experiment-{experiment.pk}"' in content.split('id="latest-experiments"')[1].split("</section>")[0]
    )


def test_an_experiment_on_test_cases_expects_one_response_per_approved_case(team, member):
    from apps.experiments.services import testcase_approve

    endpoint = sim_endpoint(team)
    cases = [testcase_approve(testcase=testcase_create(team=team, author=member, submit=True, title=t, prompt="p"),
                              reviewer=member) for t in "abc"]  # fmt: skip
    experiment = experiment_create(team=team, user=None, name="cases", targets=[(endpoint, "sim-small")],
                                   test_cases=cases, responses_per_item=2)  # fmt: skip
    Experiment.objects.filter(pk=experiment.pk).update(status="running")
    (job,) = running_jobs(team)
    assert (job["completed"], job["total"]) == (0, 6)
    assert TestCase.objects.filter(team=team, status="approved").count() == 3


# --- the websocket ---------------------------------------------------------------------------------


def session_cookie(user, active_team=None) -> bytes:
    """A real signed-in session of `user` (optionally with an active team), as a Cookie header."""
    client = Client()
    client.force_login(user)
    key = client.cookies["sessionid"].value
    if active_team is not None:
        session = import_module(settings.SESSION_ENGINE).SessionStore(session_key=key)  # the site's, cache and all
        session[ACTIVE_TEAM_SESSION_KEY] = active_team.pk
        session.save()
    return f"sessionid={key}".encode()


def communicator(cookie: bytes | None, origin: bytes = b"http://localhost") -> WebsocketCommunicator:
    from llmbench.asgi import application

    headers = [(b"origin", origin), (b"host", b"localhost")]
    if cookie:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(application, "/ws/dashboard/", headers=headers)


async def refused(cookie: bytes | None, origin: bytes = b"http://localhost") -> bool:
    ws = communicator(cookie, origin)
    connected, _ = await ws.connect()
    await ws.disconnect()
    return not connected


def running_batch(team, **fields) -> Batch:
    batch = make_batch(team, **fields)
    Experiment.objects.filter(pk=batch.pk).update(status="running")
    return batch


@pytest.mark.django_db(transaction=True)
class TestWebsocket:
    def test_anonymous_wrong_origin_and_teamless_users_are_refused(self, team, member):
        assert asyncio.run(refused(None))
        assert asyncio.run(refused(session_cookie(member), origin=b"http://evil.example"))
        assert asyncio.run(refused(session_cookie(UserFactory())))  # signed in, in no team
        assert not asyncio.run(refused(session_cookie(member)))

    def test_another_teams_jobs_are_never_sent(self, team, other_team, member):
        mine, theirs = running_batch(team), running_batch(other_team)
        # A member of both teams whose session is on the other team gets only that team's jobs.
        both = MembershipFactory(team=team, role=Membership.Role.VIEWER).user
        MembershipFactory(team=other_team, user=both, role=Membership.Role.VIEWER)

        async def first_jobs(cookie):
            ws = communicator(cookie)
            connected, _ = await ws.connect()
            assert connected
            message = await ws.receive_json_from(timeout=5)
            await ws.disconnect()
            return {f"{j['kind']}-{j['id']}" for j in message["jobs"]}

        assert asyncio.run(first_jobs(session_cookie(member))) == {f"batch-{mine.pk}"}
        assert asyncio.run(first_jobs(session_cookie(both, active_team=other_team))) == {f"batch-{theirs.pk}"}
        assert asyncio.run(first_jobs(session_cookie(both, active_team=team))) == {f"batch-{mine.pk}"}

    def test_a_removed_member_is_disconnected(self, team, member):
        running_batch(team)
        cookie = session_cookie(member)

        async def scenario():
            ws = communicator(cookie)
            connected, _ = await ws.connect()
            assert connected
            await ws.receive_json_from(timeout=5)
            await asyncio.to_thread(closing_connection(Membership.objects.filter(user=member).delete))
            output = await ws.receive_output(timeout=5)
            await ws.wait()
            return output

        assert asyncio.run(scenario()) == {"type": "websocket.close", "code": 4403}

    def test_a_running_batchs_progress_is_sent_and_updated_as_results_are_stored(self, team, member, queued):
        endpoint = sim_endpoint(team, base_url="sim://local?ttft_ms=500&itl_ms=1&jitter=0")
        batch = make_batch(team, endpoint=endpoint, repetitions=1, concurrency=1)  # 6 results, one at a time: about 3 s
        batch_start(batch=batch)
        key, cookie = f"batch-{batch.pk}", session_cookie(member)

        async def scenario():
            ws = communicator(cookie)
            connected, _ = await ws.connect()
            assert connected
            first = await ws.receive_json_from(timeout=5)
            seen = [first]

            worker = threading.Thread(target=run_until_done, args=[batch.pk])
            worker.start()
            while not any(f"{j['kind']}-{j['id']}" == key for j in seen[-1]["finished"]):
                seen.append(await ws.receive_json_from(timeout=10))
            await asyncio.to_thread(worker.join, 30)
            await ws.disconnect()
            return seen

        seen = asyncio.run(scenario())
        states = [next(j for j in message["jobs"] + message["finished"] if f"{j['kind']}-{j['id']}" == key)
                  for message in seen]  # fmt: skip
        assert (states[0]["status"], states[0]["completed"], states[0]["total"]) == ("pending", 0, 6)
        assert any(s["status"] == "running" and 0 < s["completed"] < 6 for s in states)  # moved while running
        assert [s["completed"] for s in states] == sorted(s["completed"] for s in states)
        assert seen[-1]["jobs"] == []  # finished: off the running tile, sent for the "Latest" list instead
        assert states[-1] | {"url": ""} == {
            "kind": "batch", "id": batch.pk, "name": "sweep", "status": "completed", "progress": 100.0,
            "completed": 6, "total": 6, "unit": "results", "url": "",
        }  # fmt: skip
        assert Response.objects.filter(experiment_id=batch.pk).count() == 6


class TestTilesDuringABurst:
    """While a run of the team is going, each stored result changes what the analytical tiles are computed from;
    they are recomputed at most every DASHBOARD_TILES_REFRESH_S then, and at once when nothing runs."""

    def test_while_runs_go_the_tiles_of_the_last_seconds_stand(self, team, settings, monkeypatch):
        from llmbench import dashboard

        settings.DASHBOARD_TILES_REFRESH_S = 5
        clock = [1_000_000.0]
        monkeypatch.setattr(dashboard.time, "time", lambda: clock[0])
        priced_responses(team, "first", [1.0])
        assert dashboard.analytics_tiles(team, busy=True).cost.total_usd == pytest.approx(1.0)
        priced_responses(team, "second", [2.0])
        clock[0] += 4
        assert dashboard.analytics_tiles(team, busy=True).cost.total_usd == pytest.approx(1.0)  # 4 s old: stands
        assert dashboard.analytics_tiles(team, busy=False).cost.total_usd == pytest.approx(3.0)  # nothing runs
        priced_responses(team, "third", [4.0])
        clock[0] += 6
        assert dashboard.analytics_tiles(team, busy=True).cost.total_usd == pytest.approx(7.0)  # 6 s old: again

    def test_zero_recomputes_on_every_change(self, team, settings):
        from llmbench import dashboard

        settings.DASHBOARD_TILES_REFRESH_S = 0
        priced_responses(team, "first", [1.0])
        assert dashboard.analytics_tiles(team, busy=True).cost.total_usd == pytest.approx(1.0)
        priced_responses(team, "second", [2.0])
        assert dashboard.analytics_tiles(team, busy=True).cost.total_usd == pytest.approx(3.0)

    def test_another_teams_tiles_never_stand_in(self, team, other_team, settings):
        from llmbench import dashboard

        settings.DASHBOARD_TILES_REFRESH_S = 60
        priced_responses(team, "ours", [1.0])
        assert dashboard.analytics_tiles(team, busy=True).cost.total_usd == pytest.approx(1.0)
        priced_responses(other_team, "theirs", [5.0])
        assert dashboard.analytics_tiles(other_team, busy=True).cost.total_usd == pytest.approx(5.0)
