"""manage.py serve: the ASGI web server (HTTP + websockets) and a django-q2 worker, together.

Both run as child processes in the foreground; Ctrl-C (or SIGTERM) stops both, and if either
one dies the other is stopped too, so a half-running site never goes unnoticed.
"""

import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the site over ASGI (uvicorn) with a django-q2 worker, until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=1, help="uvicorn web processes.")
        parser.add_argument("--no-worker", action="store_true", help="Do not start the task worker.")

    def handle(self, *args, host, port, workers, no_worker, **options):
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
        ]
        if not settings.DEBUG:
            web += ["--proxy-headers"]
        processes = {"web": subprocess.Popen(web)}
        if not no_worker:
            processes["worker"] = subprocess.Popen([sys.executable, "manage.py", "qcluster"])
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
            time.sleep(0.3)
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10
        for process in processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
        sys.exit(exit_code)
