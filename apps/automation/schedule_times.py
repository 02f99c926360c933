"""When a schedule fires: cron expressions evaluated in the schedule's IANA time zone (cronsim + zoneinfo), and
intervals that keep their cadence. Pure functions; times in and out are aware datetimes (UTC out)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cron_descriptor import ExpressionDescriptor, FormatError, Options
from cronsim import CronSim, CronSimError
from django.core.exceptions import ValidationError

# The nicknames cron implementations accept, as the five fields cronsim reads.
NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MAX_CRON_LENGTH = 100


# Files of the system's zoneinfo folder that are not IANA zones: the machine's own setting and helpers.
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@lru_cache(maxsize=1)
def timezone_names() -> list[str]:
    """Every IANA time zone name this system knows, sorted (the form's suggestions)."""
    return sorted(_known_zones())


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_ZONES


def zone(name: str) -> ZoneInfo:
    """The time zone called `name` (one of the system's IANA names); ValidationError when there is none."""
    if name not in _known_zones():
        raise ValidationError(f"“{name}” is not a time zone: use an IANA name such as Europe/Paris or UTC.")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValidationError(f"“{name}” is not a time zone: use an IANA name such as Europe/Paris or UTC.") from None


def cron_fields(expression: str) -> str:
    """The expression as five cron fields (nicknames such as @daily expanded, spaces normalised)."""
    text = " ".join(expression.split())
    return NICKNAMES.get(text.lower(), text)


def cron_check(expression: str) -> str:
    """The expression normalised when cronsim accepts it and it fires at least once; ValidationError otherwise."""
    fields = cron_fields(expression)
    if not fields:
        raise ValidationError("Give a cron expression, e.g. “0 6 * * 1-5” for 06:00 on weekdays.")
    if len(fields) > MAX_CRON_LENGTH:
        raise ValidationError(f"A cron expression has at most {MAX_CRON_LENGTH} characters.")
    try:
        next(CronSim(fields, datetime(2000, 1, 1, tzinfo=UTC)))
    except CronSimError as exc:
        raise ValidationError(
            f"“{expression}” is not a cron expression ({exc}): five fields, minute hour day-of-month month "
            "day-of-week, e.g. “0 6 * * 1-5”."
        ) from None
    except StopIteration:
        raise ValidationError(f"“{expression}” never fires.") from None
    return fields


def cron_next(expression: str, timezone: str, after: datetime, count: int = 1) -> list[datetime]:
    """The next `count` times (UTC) strictly after `after` at which the expression fires on the zone's clock.

    Daylight saving follows cronsim (like Debian's cron): a time the clocks skip fires at the jump, a time that
    happens twice fires once."""
    clock = CronSim(cron_fields(expression), after.astimezone(zone(timezone)))
    return [next(clock).astimezone(UTC) for _ in range(count)]


def interval_next(*, anchor: datetime, minutes: int, after: datetime) -> datetime:
    """The first time of the series anchor + k·minutes (k ≥ 1) strictly after `after`: a schedule that was down for
    a while fires once and keeps its cadence, it does not fire every missed slot."""
    step = timedelta(minutes=minutes)
    if anchor > after:
        return anchor.astimezone(UTC)
    missed = (after - anchor) // step
    return (anchor + (missed + 1) * step).astimezone(UTC)


def next_fire(*, cron: str, interval_minutes: int | None, timezone: str, after: datetime,
              anchor: datetime | None = None) -> datetime:  # fmt: skip
    """When a schedule fires next after `after`: its cron expression in its zone, or its interval from `anchor`
    (the slot it last fired for; `after` itself for a new schedule)."""
    if cron:
        return cron_next(cron, timezone, after)[0]
    if not interval_minutes:
        raise ValueError("a schedule needs a cron expression or an interval")
    return interval_next(anchor=anchor or after, minutes=interval_minutes, after=after)


@lru_cache(maxsize=512)
def cron_words(cron: str) -> str | None:
    """A cron expression in English (cron-descriptor, 24-hour clock): “at 06:00, Monday through Friday”; None when
    it cannot say it."""
    fields = NICKNAMES.get(cron.strip().lower(), cron)
    try:
        words = ExpressionDescriptor(
            fields, Options(locale_code="en_US", use_24hour_time_format=True)
        ).get_description()
    except (FormatError, ValueError, KeyError, IndexError):
        return None
    return words[:1].lower() + words[1:]


def when_text(*, cron: str, interval_minutes: int | None, timezone: str) -> str:
    """The schedule's timing in words: “every 30 minutes”, “at 06:00, Monday through Friday (Europe/Paris; cron 0 6
    * * 1-5)”."""
    if cron:
        words = cron_words(cron)
        return f"{words} ({timezone}; cron {cron})" if words else f"cron {cron} ({timezone})"
    minutes = interval_minutes or 0
    if minutes % 1440 == 0:
        days = minutes // 1440
        return "every day" if days == 1 else f"every {days} days"
    if minutes % 60 == 0:
        hours = minutes // 60
        return "every hour" if hours == 1 else f"every {hours} hours"
    return "every minute" if minutes == 1 else f"every {minutes} minutes"
