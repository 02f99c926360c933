"""Live progress of a benchmark run over a websocket: signed in, same-origin (asgi.py), and a member of the run's
team. The first message is the state read from the database (selectors.progress_payload); then the consumer relays
the worker's group messages ({"type": "benchmark.progress", "payload": …} to group "benchmark-run-<id>", instant
with Redis) and also re-reads the database every second, so progress arrives where the channel layer cannot cross
processes (the in-memory layer of `make run`) and a reconnecting page always shows the truth. It stops reading once
the run has finished."""

from apps.benchmarks.models import FINISHED, BenchmarkRun
from apps.benchmarks.selectors import progress_payload
from llmbench.progress_consumer import JobProgressConsumer


class BenchmarkRunProgressConsumer(JobProgressConsumer):
    model, url_kwarg, poll_s, finished_statuses = BenchmarkRun, "run_id", 1.0, FINISHED
    benchmark_progress = JobProgressConsumer.relay

    def read_payload(self, job_id: int) -> dict | None:
        run = BenchmarkRun.objects.select_related("suite").filter(pk=job_id).first()
        return progress_payload(run) if run else None
