"""Two workers ticking at the same moment fire a due schedule once (row lock + compare-and-set + a unique slot)."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from apps.automation.models import ScheduledRun
from apps.automation.services import schedule_create, schedules_fire_due
from tests.automation.fakes import FakeKinds
from tests.threaded import closing_connection

pytestmark = pytest.mark.django_db(transaction=True)
T0 = datetime(2026, 6, 1, 6, 0, tzinfo=UTC)


def test_two_ticks_at_once_fire_each_schedule_once(team, monkeypatch):
    """Eight threads fire the same five due schedules together: five runs started, five firings recorded."""
    kinds = FakeKinds.install(monkeypatch)
    make = dict(team=team, user=None, kind="experiment", interval_minutes=60, now=T0)
    schedules = [schedule_create(template_run_id=kinds.add(team), **make) for _ in range(5)]
    gate = threading.Barrier(8)

    @closing_connection
    def tick() -> int:
        gate.wait(timeout=10)
        return schedules_fire_due(now=T0 + timedelta(hours=1))

    with ThreadPoolExecutor(8) as pool:
        fired = [f.result(timeout=60) for f in [pool.submit(tick) for _ in range(8)]]
    assert sum(fired) == 5 and len(kinds.repeats) == 5
    assert sorted(ScheduledRun.objects.values_list("schedule_id", flat=True)) == sorted(s.pk for s in schedules)
