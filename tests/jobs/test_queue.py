"""The fair queue (apps/jobs): who starts next, the caps, re-deliveries, exceptions and lost jobs.

The broker is replaced by a list of the job ids handed to it, and the workers by calling job_execute in the test."""

import subprocess
import sys
from datetime import timedelta

import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone
from django_q.models import Schedule

from apps.experiments.services import experiment_create, experiment_start
from apps.jobs import services
from apps.jobs.models import Job
from apps.jobs.services import job_execute, job_submit, jobs_dispatch, jobs_tick
from apps.providers.models import ProviderEndpoint
from llmbench.models import TaskWorker
from llmbench.workers import process_space
from tests.factories import TeamFactory

pytestmark = pytest.mark.django_db
NOOP, RECORD, FAIL = "tests.jobs.work.noop", "tests.jobs.work.record", "tests.jobs.work.fail"


@pytest.fixture
def handed(monkeypatch):
    """The job ids handed to the broker, in order."""
    calls: list[int] = []
    monkeypatch.setattr(services, "async_task", lambda func, job_id, **kwargs: calls.append(job_id))
    return calls


@pytest.fixture
def queue(django_capture_on_commit_callbacks):
    """Submit and work as the services and workers do, with what they run after commit run at once."""

    class Queue:
        def submit(self, team, count=1, func=NOOP, args=()):
            ids = []
            for index in range(count):
                with django_capture_on_commit_callbacks(execute=True):
                    job_submit(team_id=team.pk if team else None, func=func, args=args or (team and team.slug, index))
                ids.append(Job.objects.order_by("-id").values_list("id", flat=True).first())
            return ids

        def work(self, job_id):
            with django_capture_on_commit_callbacks(execute=True):
                return job_execute(job_id=job_id)

        def tick(self):
            with django_capture_on_commit_callbacks(execute=True):
                return jobs_tick()

    return Queue()


def team_of(job_id: int) -> str:
    return Job.objects.get(pk=job_id).team.slug


@override_settings(JOBS_MAX_RUNNING=2, JOBS_TEAM_MAX_RUNNING=2)
def test_a_second_team_starts_before_the_bursting_teams_third_job(team, other_team, queue, handed):
    """Team A queues 30 jobs, then team B one: B's is the third to start, before A's third."""
    burst = queue.submit(team, 30)
    (single,) = queue.submit(other_team)
    assert handed == burst[:2]
    queue.work(burst[0])
    assert handed == [*burst[:2], single]
    queue.work(burst[1])
    assert handed[-1] == burst[2]


@override_settings(JOBS_MAX_RUNNING=4, JOBS_TEAM_MAX_RUNNING=2)
def test_a_team_never_runs_more_than_its_cap_even_with_workers_free(team, queue, handed):
    """With room for 4, a team capped at 2 gets 2; the next starts only when one of them is done."""
    burst = queue.submit(team, 10)
    assert handed == burst[:2]
    assert Job.objects.filter(state=Job.State.QUEUED).count() == 8
    queue.work(burst[0])
    assert handed == burst[:3]
    assert Job.objects.filter(state=Job.State.RUNNING).count() == 2


@override_settings(JOBS_MAX_RUNNING=3, JOBS_TEAM_MAX_RUNNING=2)
def test_the_total_cap_holds_across_teams(team, other_team, queue, handed):
    """Two teams with five jobs each and room for three: three run; a freed slot goes to the team served longer ago."""
    first, second = queue.submit(team, 5), queue.submit(other_team, 5)
    assert handed == [*first[:2], second[0]]
    queue.work(first[0])
    assert handed[-1] == first[2]  # one running each: A, served longer ago than B, goes


@override_settings(JOBS_MAX_RUNNING=1, JOBS_TEAM_MAX_RUNNING=1)
def test_with_one_slot_teams_take_turns(team, other_team, queue, handed):
    """One job at a time: teams A (3 jobs), B and C (one each) start A, B, C, A, A, not A's burst first."""
    third = TeamFactory(name="Charlie", slug="charlie")
    queue.submit(team, 3), queue.submit(other_team), queue.submit(third)
    for _ in range(5):
        queue.work(handed[-1])
    assert [team_of(job_id) for job_id in handed] == ["alpha", "bravo", "charlie", "alpha", "alpha"]


def test_a_redelivered_job_already_done_does_nothing(team, queue, handed, tmp_path):
    """The broker delivers a finished job again: the function is not called a second time."""
    out = tmp_path / "calls.jsonl"
    (job_id,) = queue.submit(team, func=RECORD, args=(str(out), "alpha", 1))
    assert queue.work(job_id) == "recorded"
    assert queue.work(job_id) == "already done"
    assert len(out.read_text().splitlines()) == 1
    assert Job.objects.get(pk=job_id).attempts == 1


@override_settings(JOBS_MAX_RUNNING=1)
def test_a_job_that_raises_is_done_with_its_error_and_the_next_one_starts(team, queue, handed):
    """An exception ends the job (done, the error kept, raised again for django-q2's log) and frees its slot."""
    (failing,) = queue.submit(team, func=FAIL, args=("the endpoint exploded",))
    (following,) = queue.submit(team)
    with pytest.raises(RuntimeError, match="the endpoint exploded"):
        queue.work(failing)
    job = Job.objects.get(pk=failing)
    assert job.state == Job.State.DONE and job.error == "RuntimeError: the endpoint exploded"
    assert handed == [failing, following]
    assert queue.work(failing) == "already done"  # the broker's retry of a failed task repeats nothing


def test_a_job_submitted_in_a_transaction_that_rolls_back_is_not_queued(team, handed):
    """The job is stored with the caller's transaction: rolled back, nothing is queued or handed out."""
    with pytest.raises(RuntimeError), transaction.atomic():
        job_submit(team_id=team.pk, func=NOOP, args=(1,))
        raise RuntimeError("the caller failed after submitting")
    assert not Job.objects.exists() and handed == []


@override_settings(JOBS_MAX_RUNNING=1)
def test_an_equal_job_still_waiting_is_not_queued_twice(team, queue, handed):
    """A run's recovery submitting the task that already waits in the queue adds nothing; a different one is added."""
    queue.submit(team, args=("blocker",))
    queue.submit(team, args=("batch", 7))
    queue.submit(team, args=("batch", 7))
    queue.submit(team, args=("batch", 8))
    assert Job.objects.filter(state=Job.State.QUEUED).count() == 2


def test_a_wrong_function_path_is_refused_when_submitted(team):
    """A typo in the task's path fails in the caller, not later in a worker."""
    with pytest.raises(ImportError):
        job_submit(team_id=team.pk, func="tests.jobs.work.no_such_function")
    assert not Job.objects.exists()


def test_a_job_the_broker_refused_waits_for_the_next_dispatch(team, queue, monkeypatch):
    """The broker is down when the job's turn comes: it waits in the queue and the next dispatch hands it out."""

    def refuse(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(services, "async_task", refuse)
    (job_id,) = queue.submit(team)
    assert Job.objects.get(pk=job_id).state == Job.State.QUEUED
    calls = []
    monkeypatch.setattr(services, "async_task", lambda func, job_id, **kwargs: calls.append(job_id))
    assert queue.tick() == 1 and calls == [job_id]


@override_settings(JOBS_MAX_RUNNING=1, Q_CLUSTER={"timeout": 60})
def test_a_job_past_the_task_time_limit_is_lost_and_its_slot_goes_to_the_next(team, queue, handed):
    """A job begun longer ago than the time limit plus a margin is lost; the next one starts; if it is delivered
    late after all, it runs (it never finished)."""
    stuck, following = queue.submit(team, 2)
    Job.objects.filter(pk=stuck).update(started_at=timezone.now() - timedelta(seconds=60) - services.LOST_MARGIN * 2)
    assert queue.tick() == 1
    assert Job.objects.get(pk=stuck).state == Job.State.LOST and handed == [stuck, following]
    assert queue.work(stuck) == "ok"
    assert Job.objects.get(pk=stuck).state == Job.State.DONE


@override_settings(JOBS_MAX_RUNNING=1)
def test_a_job_whose_worker_stopped_beating_is_lost_at_once(team, queue, handed):
    """The worker running a job was killed (its beat is stale): the job is lost at the next tick, not after the
    task time limit, and the next job starts."""
    stuck, following = queue.submit(team, 2)
    now = timezone.now()
    TaskWorker.objects.create(host="elsewhere", pid=4242, cluster="llmbench", state_since=now, started_at=now,
                              beat_at=now - timedelta(minutes=1), busy=True)  # fmt: skip
    Job.objects.filter(pk=stuck).update(started_at=now, worker="elsewhere:4242")
    queue.tick()
    assert Job.objects.get(pk=stuck).state == Job.State.LOST
    assert handed == [stuck, following]


def test_jobs_finished_a_week_ago_are_forgotten(team, queue, handed):
    """The tick deletes finished jobs older than a week and keeps recent ones."""
    old, recent = queue.submit(team, 2)
    queue.work(old), queue.work(recent)
    Job.objects.filter(pk=old).update(queued_at=timezone.now() - services.KEEP - timedelta(hours=1))
    queue.tick()
    assert list(Job.objects.values_list("pk", flat=True)) == [recent]


def test_a_job_of_no_team_queues_as_a_team_of_its_own(team, queue, handed):
    """A task whose run has no team (deleted meanwhile) still runs: its line is the no-team line."""
    (job_id,) = queue.submit(None, args=("orphan",))
    assert handed == [job_id] and queue.work(job_id) == "ok"


def test_the_every_minute_dispatch_schedule_is_installed():
    """The migration installs the schedule that dispatches (and finds lost jobs) every minute."""
    schedule = Schedule.objects.get(func="apps.jobs.tasks.dispatch_tick")
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == (Schedule.MINUTES, 1, -1)


def test_dispatching_with_nothing_waiting_hands_out_nothing(handed):
    """An idle queue: the dispatcher returns 0 and the broker sees nothing."""
    assert jobs_dispatch() == 0 and handed == []


def test_starting_an_experiment_queues_its_task_in_the_teams_line(team, handed, django_capture_on_commit_callbacks):
    """A run kind's start goes through the fair queue: a job of the experiment's team with its primary key."""
    sim = ProviderEndpoint.objects.create(team=team, name="sim", kind="sim")
    experiment = experiment_create(team=team, user=None, name="e", targets=[(sim, "a")], prompt="p")
    with django_capture_on_commit_callbacks(execute=True):
        experiment_start(experiment=experiment)
    job = Job.objects.get()
    assert (job.team_id, job.func, job.args) == (team.pk, "apps.experiments.tasks.experiment_run", [experiment.pk])
    assert handed == [job.pk]


@override_settings(JOBS_MAX_RUNNING=1)
def test_a_full_queue_frees_the_slot_of_a_job_whose_worker_process_is_gone(team, queue, handed):
    """The job holding the only slot ran in a process of this machine that no longer exists: the next submit finds
    it lost at once (no wait for the tick or the time limit) and the new job starts."""
    (stuck,) = queue.submit(team)
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    Job.objects.filter(pk=stuck).update(started_at=timezone.now(), worker=f"{process_space()}:{ended.stdout.strip()}")
    (following,) = queue.submit(team)
    assert Job.objects.get(pk=stuck).state == Job.State.LOST
    assert handed == [stuck, following]
