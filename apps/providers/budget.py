"""A team's monthly budget as a hard limit (issue 17): refuse a run whose estimate exceeds what is left, stop a running
one when metered cost reaches the limit, and tell the team at 80% and 100%."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError


class BudgetExceeded(ValidationError):
    """A run refused before it starts: its estimate is more than the team has left (the message gives the figures)."""


@dataclass(frozen=True)
class BudgetState:
    budget_usd: float | None  # None: no budget set
    spent_usd: float  # metered, non-simulated, since the start of the month (UTC)
    hard_limit: bool

    @property
    def left_usd(self) -> float | None:
        return None if self.budget_usd is None else max(0.0, self.budget_usd - self.spent_usd)


def budget_state(team_id: int) -> BudgetState:
    """CONTRACT STUB: the budgets helper implements it (metered spend of every run kind this month)."""
    return BudgetState(budget_usd=None, spent_usd=0.0, hard_limit=False)


def budget_check(*, team_id: int, estimate_usd: float | None, what: str) -> None:
    """Raise BudgetExceeded when the team's budget is a hard limit and `estimate_usd` is more than what is left.

    CONTRACT STUB: allows everything; the budgets helper implements it.
    """
