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

    def stall(self, seconds: float) -> None:
        """A busy client: move the clock on as if the loop had been blocked for `seconds`."""
        self._virtual_now += seconds

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


class VirtualServer:
    """A fake `send(i)` / `send_turn(s, t)` timed on the virtual clock: each request takes `ttft_s` to its
    first token, then `tokens − 1` more `itl_s` apart. `ttft_of(key)` overrides the TTFT per request
    (key `(i,)` or `(s, t)`); requests whose key is in `fail` end with a server error. It logs every
    send as `(key, send_time)`, keeps the results in send order, and tracks how many are in flight."""

    def __init__(self, ttft_s=0.05, itl_s=0.01, tokens=4, fail=(), ttft_of=None):
        self.ttft_s, self.itl_s, self.tokens, self.fail, self.ttft_of = ttft_s, itl_s, tokens, set(fail), ttft_of
        self.sent: list[tuple[tuple[int, ...], float]] = []
        self.results: list = []  # GenerationResult, in send order
        self.in_flight = self.peak = 0

    async def _go(self, key: tuple[int, ...]):
        from apps.providers.engine.types import ErrorKind, GenerationResult, RequestError

        result = GenerationResult(send_time=virtual_clock())
        self.sent.append((key, result.send_time))
        self.results.append(result)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.ttft_s if self.ttft_of is None else self.ttft_of(key))
            for k in range(self.tokens):
                if k:
                    await asyncio.sleep(self.itl_s)
                result.chunk_times.append(virtual_clock())
                result.chunk_tokens.append(1)
        finally:
            self.in_flight -= 1
        result.output_tokens = self.tokens
        result.end_time = virtual_clock()
        if key in self.fail:
            result.error = RequestError(ErrorKind.SERVER, "injected failure", status=500)
        return result

    async def send(self, index: int):
        return await self._go((index,))

    async def send_turn(self, session: int, turn: int):
        return await self._go((session, turn))
