"""The events a team can be notified of (issue 17)."""

RUN_FAILED = "run_failed"
RUN_FINISHED = "run_finished"
REGRESSION = "regression"
BUDGET_80 = "budget_80"
BUDGET_100 = "budget_100"
ERROR_RATE = "error_rate"
SCHEDULE_PAUSED = "schedule_paused"
GATE_FINISHED = "gate_finished"

EVENTS: dict[str, str] = {
    RUN_FAILED: "A run failed",
    RUN_FINISHED: "A run finished",
    REGRESSION: "A regression was detected",
    BUDGET_80: "The monthly budget is 80% spent",
    BUDGET_100: "The monthly budget is spent",
    ERROR_RATE: "A run's error rate is over the threshold",
    SCHEDULE_PAUSED: "A schedule paused itself",
    GATE_FINISHED: "A CI gate passed or failed",
}

# Not an event anyone subscribes to: the message a team admin sends to check a channel ("Send a test").
TEST = "test"
TEST_LABEL = "Test message"

# What a member receives by e-mail until they choose: failures, regressions, the budget, a schedule that paused.
DEFAULT_MEMBER_EVENTS: tuple[str, ...] = (RUN_FAILED, REGRESSION, BUDGET_80, BUDGET_100, SCHEDULE_PAUSED)


def event_words(event: str) -> str:
    """An event in words (the test message included)."""
    if event == TEST:
        return TEST_LABEL
    return EVENTS.get(event, event.replace("_", " "))
