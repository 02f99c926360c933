"""With a real task cluster (`manage.py qcluster`, tests/cluster.py) on the test's broker: django-q2's scheduler
calls the automation tick (the migration's every-minute schedule), the tick fires a due schedule, and a worker runs
the repeated experiment to completion; the next tick stores its figures."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule as QSchedule

from apps.automation.models import Schedule, ScheduledRun
from apps.automation.services import schedule_create
from apps.automation.tasks import automation_tick
from apps.experiments.models import Experiment
from apps.experiments.services import experiment_create
from tests.batches.helpers import sim_endpoint
from tests.cluster import kill_cluster, start_cluster, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
TICK = "llmbench: automation tick"


def test_the_clusters_scheduler_ticks_and_a_worker_runs_the_scheduled_experiment(tmp_path, team, member):
    template = experiment_create(team=team, user=member, name="nightly", targets=[(sim_endpoint(team), "sim-small")],
                                 prompt="Explain caching", responses_per_item=2)  # fmt: skip
    schedule = schedule_create(team=team, user=member, kind="experiment", template_run_id=template.pk,
                               interval_minutes=60)  # fmt: skip
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=timezone.now() - timedelta(seconds=1))
    # The migration's row (a test before this one may have flushed the tables): due at the scheduler's first look.
    QSchedule.objects.update_or_create(
        name=TICK,
        defaults={"func": "apps.automation.tasks.automation_tick", "schedule_type": QSchedule.MINUTES, "minutes": 1,
                  "repeats": -1, "next_run": timezone.now() - timedelta(seconds=1)},
    )  # fmt: skip
    log = tmp_path / "workers.log"
    cluster = start_cluster(log)
    try:
        fired = ScheduledRun.objects.filter(schedule=schedule).exclude(run_id=None)
        run = wait_for(lambda: fired.first(), 90, lambda: f"the tick to fire ({log.read_text()[-2000:]})")
        done = Experiment.objects.filter(pk=run.run_id, status="completed")
        wait_for(lambda: done.exists(), 90, lambda: f"the repeat to complete ({log.read_text()[-2000:]})")
    finally:
        kill_cluster(cluster)
    assert run.run_id != template.pk and Experiment.objects.get(pk=run.run_id).responses.count() == 2
    automation_tick()  # the next minute's tick, here rather than waiting for it
    run.refresh_from_db()
    assert run.state == "completed" and run.figures["error_rate"]["value"] == 0.0
    schedule.refresh_from_db()
    assert schedule.next_run_at > timezone.now() + timedelta(minutes=55) and schedule.last_fired_at is not None
