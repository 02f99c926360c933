"""An asyncio event loop on a virtual clock: whenever nothing is ready to run, time jumps to the
next timer. Latency models can then be tested exactly and instantly, whatever the machine's load.

It relies on two attributes of CPython's BaseEventLoop (`_ready`, `_scheduled`), stable since 3.4;
only for code that does no real I/O."""

import asyncio
from collections.abc import Coroutine
from typing import Any

# How late a real-clock timing may be and still pass: CI shares 2 cores with other work, and a busy
# event loop wakes up late. Real-clock tests assert "never early" exactly and lateness only up to this.
LATE_OK_MS = 150.0


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self):
        super().__init__()
        self._virtual_now = 0.0

    def time(self) -> float:
        return self._virtual_now

    def _run_once(self) -> None:
        if not self._ready:
            pending = [h.when() for h in self._scheduled if not h.cancelled()]
            if pending:
                self._virtual_now = max(self._virtual_now, min(pending))
        super()._run_once()


def run_virtual(coro: Coroutine[Any, Any, Any]) -> Any:
    """`asyncio.run` on a virtual clock; inside, `virtual_clock()` is the clock to give adapters."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(coro)


def virtual_clock() -> float:
    return asyncio.get_running_loop().time()
