"""When schedules fire: cron on the zone's clock through daylight saving, nicknames, intervals, bad input in words."""

from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError

from apps.automation import schedule_times
from apps.automation.schedule_times import cron_check, cron_next, interval_next, when_text, zone


def test_a_time_the_clocks_skip_fires_at_the_jump_and_a_repeated_time_fires_once():
    """Paris: 02:30 does not exist on 29 March 2026 (fires at 03:00 CEST) and happens twice on 25 October (once)."""
    spring = cron_next("30 2 * * *", "Europe/Paris", datetime(2026, 3, 28, 12, 0, tzinfo=UTC), 2)
    assert spring == [datetime(2026, 3, 29, 1, 0, tzinfo=UTC), datetime(2026, 3, 30, 0, 30, tzinfo=UTC)]
    autumn = cron_next("30 2 * * *", "Europe/Paris", datetime(2026, 10, 24, 12, 0, tzinfo=UTC), 2)
    assert autumn == [datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 26, 1, 30, tzinfo=UTC)]


def test_nicknames_become_five_fields_and_spaces_are_normalised():
    assert [cron_check(e) for e in ("@daily", "@HOURLY", " 0  6 * * 1-5 ")] == ["0 0 * * *", "0 * * * *", "0 6 * * 1-5"]


@pytest.mark.parametrize("expression", ["", "61 * * * *", "0 6 * *", "0 0 30 2 *", "@sometimes", "x" * 101])
def test_a_bad_cron_expression_is_refused_in_words(expression):
    with pytest.raises(ValidationError):
        cron_check(expression)


@pytest.mark.parametrize("name", ["Mars/Olympus", "", " UTC", "../etc/localtime", "/etc/localtime"])
def test_only_iana_zone_names_are_time_zones(name):
    with pytest.raises(ValidationError, match="is not a time zone"):
        zone(name)


def test_an_interval_keeps_its_cadence():
    anchor = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert interval_next(anchor=anchor, minutes=60, after=datetime(2026, 1, 1, 13, 30, tzinfo=UTC)) == datetime(
        2026, 1, 1, 14, 0, tzinfo=UTC
    )
    assert interval_next(anchor=anchor, minutes=60, after=anchor) == datetime(2026, 1, 1, 11, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("minutes", "words"), [(1, "every minute"), (45, "every 45 minutes"), (60, "every hour"), (180, "every 3 hours"),
                           (1440, "every day"), (10080, "every 7 days")],
)  # fmt: skip
def test_intervals_in_words(minutes, words):
    assert when_text(cron="", interval_minutes=minutes, timezone="UTC") == words


@pytest.mark.parametrize(
    ("cron", "words"),
    [("0 6 * * 1-5", "at 06:00, Monday through Friday"), ("*/15 * * * *", "every 15 minutes"),
     ("30 18 * * 0", "at 18:30, only on Sunday"), ("0 9 1 * *", "at 09:00, on day 1 of the month"),
     ("@daily", "at 00:00"), ("0 9 * * 1#1", "at 09:00, on the first Monday of the month")],
)  # fmt: skip
def test_cron_expressions_in_words(cron, words):
    """A schedule's cron expression is said in words on a 24-hour clock, with its zone and the expression itself."""
    cron_check(cron)  # every example is one the schedule form accepts
    assert when_text(cron=cron, interval_minutes=None, timezone="Asia/Tokyo") == f"{words} (Asia/Tokyo; cron {cron})"


def test_a_cron_expression_without_words_is_shown_as_it_is():
    assert when_text(cron="0 6 * *", interval_minutes=None, timezone="UTC") == "cron 0 6 * * (UTC)"


@pytest.mark.parametrize("name", ["localtime", "posixrules", "Factory"])
def test_the_machines_own_zone_files_are_not_time_zones(name):
    """The server's local setting is not a zone a schedule may name: its meaning changes with the machine."""
    with pytest.raises(ValidationError):
        schedule_times.zone(name)
    assert name not in schedule_times.timezone_names()
