"""Run an asyncio server in a background thread, for tests whose code under test is synchronous."""

import asyncio
import threading
from contextlib import contextmanager


@contextmanager
def running_in_thread(start, stop):
    """`start()` is a coroutine returning the server; `stop(server)` a coroutine closing it."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(stop(server), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
