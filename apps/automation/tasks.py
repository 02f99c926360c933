"""django-q2 entry points of automation: the every-minute tick (migration 0002 schedules it)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from apps.automation import services, watch

logger = logging.getLogger(__name__)

# Apps above automation (CI gates) hook into the tick from their AppConfig.ready: automation imports none of them.
_HOOKS: dict[str, Callable[[], object]] = {}


def tick_hook_register(name: str, hook: Callable[[], object]) -> None:
    """Call `hook()` on every tick after the schedules (e.g. "gates": gates_evaluate_pending). Idempotent per name."""
    _HOOKS[name] = hook


def automation_tick() -> dict[str, object]:
    """Each minute: settle the scheduled runs that finished, fire the due schedules, notify run events, then the
    hooks. Each step is on its own: one failing is logged and the others still run. Returns what each step did."""
    steps: list[tuple[str, Callable[[], object]]] = [
        ("settled", services.scheduled_runs_settle),
        ("fired", services.schedules_fire_due),
        ("run_events", watch.runs_watch),
        *_HOOKS.items(),
    ]
    done: dict[str, object] = {}
    for name, step in steps:
        try:
            done[name] = step()
        except Exception:
            logger.exception("automation tick: %s failed", name)
            done[name] = "error"
    return done
