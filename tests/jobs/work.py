"""Task functions for the fair queue's tests, importable by a real worker process (tests/cluster.py)."""

import json
import os
import time


def record(path: str, team: str, index: int, sleep_ms: int = 0) -> str:
    """Append [team, index, start, end, pid] to the file at `path` (one short line: O_APPEND writes are atomic)."""
    started = time.time()
    time.sleep(sleep_ms / 1000)
    line = json.dumps([team, index, started, time.time(), os.getpid()]) + "\n"
    with open(path, "a") as out:
        out.write(line)
    return "recorded"


def noop(*args) -> str:
    return "ok"


def fail(message: str) -> str:
    raise RuntimeError(message)
