"""Run events for every run of every kind (issue 17): finished, failed, error rate over the threshold.

CONTRACT STUB: the runkinds helper implements `runs_watch`; the schedules helper's every-minute tick calls it.
"""


def runs_watch() -> int:
    """Notify the events of runs that finished since the last look (each once: notify's dedupe key); the count sent."""
    return 0
