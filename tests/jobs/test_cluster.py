"""The fair queue with a real task cluster (`manage.py qcluster`, tests/cluster.py) on the test's broker: Redis
when REDIS_URL is set, else the ORM broker. Run the file both ways (docs/queue.md, Tests)."""

import json

import pytest
from django.test import override_settings

from apps.jobs.models import Job
from apps.jobs.services import job_submit
from tests.cluster import kill_cluster, start_cluster, wait_for
from tests.factories import TeamFactory

pytestmark = pytest.mark.django_db(transaction=True)
BURSTS = {"alpha": 12, "bravo": 4, "charlie": 2}
CAPS = {"JOBS_MAX_RUNNING": "2", "JOBS_TEAM_MAX_RUNNING": "1"}


def overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals open at one instant."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = open_now = 0
    for _, step in edges:
        open_now += step
        most = max(most, open_now)
    return most


@override_settings(JOBS_MAX_RUNNING=2, JOBS_TEAM_MAX_RUNNING=1)
def test_a_burst_of_three_teams_all_runs_once_within_the_caps_and_in_turn(tmp_path):
    """18 jobs (12, 4 and 2 from three teams, one of them raising) through two workers: each recorded exactly once,
    none lost, never more than one per team or two in all at once, and the small teams' first jobs are handed out
    before the big team's second."""
    out = tmp_path / "calls.jsonl"
    teams = {slug: TeamFactory(name=slug.title(), slug=slug) for slug in BURSTS}
    for slug, count in BURSTS.items():
        for index in range(count):
            job_submit(team_id=teams[slug].pk, func="tests.jobs.work.record", args=(str(out), slug, index, 150))
    job_submit(team_id=teams["bravo"].pk, func="tests.jobs.work.fail", args=("a run task raised",))
    total = sum(BURSTS.values()) + 1
    log = tmp_path / "workers.log"
    cluster = start_cluster(log, **CAPS)
    try:
        finished = Job.objects.filter(state=Job.State.DONE)
        wait_for(lambda: finished.count() == total, 120,
                 lambda: f"all {total} jobs done, {finished.count()} are ({log.read_text()[-2000:]})")  # fmt: skip
    finally:
        kill_cluster(cluster)

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    keys = [(team, index) for team, index, *_ in rows]
    expected = {(slug, index) for slug, count in BURSTS.items() for index in range(count)}
    assert len(keys) == len(set(keys)) and set(keys) == expected  # nothing lost, nothing repeated
    assert not Job.objects.exclude(state=Job.State.DONE).exists()
    assert Job.objects.filter(attempts__gt=1).count() == 0
    assert Job.objects.get(func="tests.jobs.work.fail").error == "RuntimeError: a run task raised"
    for slug in BURSTS:
        assert overlap([(start, end) for team, _, start, end, _ in rows if team == slug]) <= 1
    assert overlap([(start, end) for *_, start, end, _ in rows]) <= 2
    handed = Job.objects.order_by("dispatched_at", "id")
    alpha_second = handed.filter(team__slug="alpha").values_list("dispatched_at", flat=True)[1]
    assert handed.filter(team__slug="charlie").first().dispatched_at <= alpha_second  # one dispatch may hand out both
    assert len({pid for *_, pid in rows}) == 2  # both workers took jobs
