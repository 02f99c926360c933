"""Notifications (issue 17): events to e-mail and webhook channels."""

from __future__ import annotations

from typing import Any


def notify(
    *,
    team_id: int,
    event: str,
    title: str,
    text: str,
    url: str = "",
    facts: dict[str, Any] | None = None,
    dedupe_key: str = "",
) -> None:
    """Record one event of `team_id` and deliver it to the channels and members that chose it.

    CONTRACT STUB: does nothing; the notifications helper implements it. `event` is one of
    notifications.events.EVENTS; `dedupe_key` (when given) makes a second call with the same key a no-op.
    """
