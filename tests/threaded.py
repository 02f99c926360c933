"""Threads in tests: an asyncio server in a background thread for synchronous code under test, and
the product's synchronous work in a thread of its own with its connection closed afterwards."""

import asyncio
import functools
import threading
from contextlib import contextmanager

from django.db import connection


def closing_connection(function):
    """`function` for a thread of its own: afterwards the thread's database connection is closed, as a
    django-q worker closes its connection after each task. Otherwise the connection stays checked out
    of the test process's pool (PostgreSQL) until the pool runs dry. A connection inside an atomic
    block is the test's own and stays open."""

    @functools.wraps(function)
    def run(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        finally:
            if not connection.in_atomic_block:
                connection.close()

    return run


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
