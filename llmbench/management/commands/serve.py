"""manage.py serve: the ASGI web server (HTTP + websockets) and a django-q2 worker, together.

Both run as child processes in the foreground; Ctrl-C (or SIGTERM) stops both. If the web server
dies, the command stops (the site is down: say so). If the task worker dies or stops taking tasks
(llmbench/workers.py), it is started again, saying why: the site goes on serving pages while tasks
wait in the broker, which a restart empties; stopping the site would turn a stuck worker into an
outage.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from llmbench.webtier import close_database_connections
from llmbench.workers import WorkerSupervisor


class Command(BaseCommand):
    help = "Serve the site over ASGI (uvicorn) with a django-q2 worker, until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--workers",
            type=_positive_int,
            default=None,
            help="Web (uvicorn) processes; default WEB_CONCURRENCY, which defaults to the number of CPUs.",
        )
        parser.add_argument("--no-worker", action="store_true", help="Do not start the task worker.")

    def handle(self, *args, host, port, workers, no_worker, **options):
        web, web_env = self.web_command(host=host, port=port, workers=workers, with_worker=not no_worker)
        # Whatever start-up read here (checks, metrics) holds connections this process never uses again.
        close_database_connections()
        processes = {"web": subprocess.Popen(web, env=web_env)}
        supervisor = None
        if not no_worker:
            supervisor = WorkerSupervisor(
                [sys.executable, "manage.py", "qcluster"], write=lambda line: self.stderr.write(line), env=web_env
            )
            supervisor.start()
        self.stdout.write(self.style.SUCCESS(f"llmbench is serving on http://{host}:{port}/ (Ctrl-C stops it)"))

        stopping = False

        def stop(signum=None, frame=None):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        exit_code = 0
        while not stopping:
            for name, process in processes.items():
                code = process.poll()
                if code is not None:
                    self.stderr.write(f"The {name} process exited with code {code}; stopping.")
                    exit_code = code or 1
                    stopping = True
            if supervisor is not None and not stopping:
                supervisor.poll()  # restarts a task worker that died or is stuck, saying why
            time.sleep(0.3)
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10
        if supervisor is not None:
            supervisor.stop(timeout_s=10)
        for process in processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
        sys.exit(exit_code)

    def web_command(
        self, *, host: str, port: int, workers: int | None, with_worker: bool = False
    ) -> tuple[list[str], dict[str, str]]:
        """uvicorn with `workers` processes (default WEB_CONCURRENCY; uvicorn's supervisor restarts one
        that dies), and the environment of the web and worker processes.

        Separate processes, not threads: a process runs Python on one core at a time, so independent
        requests run in parallel only across processes (ADR 0009). Websockets work in every process
        (the channel layer joins them when REDIS_URL is set).
        """
        workers = workers or settings.WEB_CONCURRENCY
        web = [
            sys.executable,
            "-m",
            "uvicorn",
            "llmbench.asgi:application",
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning" if not settings.DEBUG else "info",
            "--lifespan",
            "off",
            # llmbench logs each request itself (llmbench/logs.py: LOG_FORMAT, LOG_REQUESTS), with the request id
            "--no-access-log",
        ]
        if not settings.DEBUG:
            web += ["--proxy-headers"]
        env = dict(os.environ)
        if (workers > 1 or with_worker) and not env.get("PROMETHEUS_MULTIPROC_DIR"):
            # Without a shared folder each process would answer /metrics with its own counters only; the task
            # worker's count too (the provider calls are made there).
            self._metrics_dir = tempfile.TemporaryDirectory(prefix="llmbench-metrics-")
            env["PROMETHEUS_MULTIPROC_DIR"] = self._metrics_dir.name
        return web, env


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number of processes")
    return value
