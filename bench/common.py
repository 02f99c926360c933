"""Shared by the bench scripts: Django set up as the server process is, and a ratio report."""

import importlib
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The benches drive one token or one user far past the API throttles' default rates (THROTTLE_RATES, which
# guard a shared site against one script): every request is still counted, none is refused.
BENCH_THROTTLE_RATES = {
    f"THROTTLE_RATE_{scope}": "100000000/minute"
    for scope in ("TOKEN", "USER", "ANON", "AUTH_FAILURE", "EXPORTS", "ANALYTICS", "RUN_START")
}
for _name, _rate in BENCH_THROTTLE_RATES.items():
    os.environ.setdefault(_name, _rate)


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database of `url` when it is missing."""
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(database_url: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmbench.settings")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost")
    # Set Django up exactly as the server process does (including its start-up GC freeze).
    importlib.import_module("llmbench.asgi")


class Report:
    """Prints `name  measured  target  ratio  ok|MISSED` lines and counts misses."""

    def __init__(self):
        self.missed: list[str] = []
        self.count = 0

    def line(self, name: str, measured: float, target: float, unit: str, *, higher_is_better: bool = False) -> None:
        self.count += 1
        ratio = measured / target
        ok = measured >= target if higher_is_better else measured <= target
        if not ok:
            self.missed.append(name)
        print(f"{name:<58} {measured:12,.1f} {unit:<6} target {target:10,.1f} {unit:<6} ratio {ratio:6.2f}  "
              f"{'ok' if ok else 'MISSED'}")  # fmt: skip

    def close(self) -> int:
        tail = f"; missed: {', '.join(self.missed)}" if self.missed else ""
        print(f"{self.count - len(self.missed)} of {self.count} targets met{tail}")
        return 1 if self.missed else 0


class Timer:
    def __enter__(self):
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.started
