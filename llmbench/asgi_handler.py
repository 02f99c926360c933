"""Django's ASGI handler with one thread hop per request instead of several (issue #12).

Django's stock ASGIHandler costs about 1.5 ms of CPU per request before any view runs, measured
with uvicorn on /health: it starts a new thread for every request (and a second one to join it), and
builds the middleware chain in async mode, so each boundary between async-capable and sync-only
middleware is a hop between the event loop and a thread, and every `MiddlewareMixin` middleware
run in async mode (SessionMiddleware, CsrfViewMiddleware, ...) hops to a thread twice. Nearly all of
our code is synchronous (the ORM, DRF), so this handler:

* builds the chain in sync mode, as under WSGI: middleware and view run in one call on the request's
  thread (async views, the SSE streams, are run by Django's sync path through async_to_sync);
* keeps a pool of request threads: each request still gets a thread of its own for its
  thread-sensitive work (its database connection lives there), but the thread is reused rather
  than started and joined per request;
* runs one request at a time per process, in arrival order (RequestGate): two request threads
  running Python at once fight over the GIL, which cost 10-30% more CPU per request at 32
  connections than taking turns (bench/web.py), and served whoever won the GIL first rather than
  whoever came first. A request still running after WEB_SLOW_REQUEST_MS (a big export, a slow query)
  stops holding the queue up: the next one starts beside it.
"""

import asyncio
import weakref
from concurrent.futures import Future, ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler

# Idle request threads kept for reuse; more requests than this at once start extra threads, which end
# when their request does. uvicorn serves far fewer concurrent requests per process in practice.
IDLE_REQUEST_THREADS_MAX = 64


class RequestThread(ThreadPoolExecutor):
    """One thread running a request's thread-sensitive calls in order; reusable once idle."""

    def __init__(self):
        super().__init__(max_workers=1, thread_name_prefix="django-request")
        self._last: Future | None = None

    def submit(self, fn, /, *args, **kwargs):
        self._last = super().submit(fn, *args, **kwargs)
        return self._last

    def is_idle(self) -> bool:
        # One worker runs the calls in order: once the last one is done, all are.
        return self._last is None or self._last.done()


class RequestGate:
    """Lets one request run at a time, first come first served; one running for longer than `slow_s`
    gives its turn to the next (so a slow request delays the others by at most `slow_s`). With
    `slow_s` = 0 every request runs as soon as it arrives."""

    def __init__(self, slow_s: float):
        self.slow_s = slow_s
        # One turn per event loop: uvicorn runs one loop per process, but a test server may start a
        # loop of its own with the same application (an asyncio primitive belongs to one loop).
        self._turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    async def run(self, call):
        if not self.slow_s:
            return await call
        loop = asyncio.get_running_loop()
        turn = self._turns.get(loop)
        if turn is None:
            turn = self._turns[loop] = asyncio.Semaphore(1)
        try:
            await turn.acquire()
        except BaseException:  # the client went away while the request waited: it never runs
            call.close()
            raise
        turn_held = True
        try:
            running = asyncio.ensure_future(call)
            done, _ = await asyncio.wait({running}, timeout=self.slow_s)
            if not done:
                turn.release()  # slow: the next request starts beside this one
                turn_held = False
            return await running
        finally:
            if turn_held:
                turn.release()


class SyncChainASGIHandler(ASGIHandler):
    """ASGIHandler whose middleware chain and views run in one sync call per request, on a reused
    thread, one request at a time unless a request is slow (RequestGate)."""

    def __init__(self):
        self._idle_threads: list[RequestThread] = []
        self._gate = RequestGate(settings.WEB_SLOW_REQUEST_MS / 1000)
        super().__init__()

    def load_middleware(self, is_async=False):
        # ASGIHandler asks for the async chain; build the sync one (see the module docstring).
        super().load_middleware(is_async=False)

    async def get_response_async(self, request):
        # BaseHandler.get_response is the sync twin of get_response_async (urlconf, chain, error log).
        return await self._gate.run(sync_to_async(self.get_response, thread_sensitive=True)(request))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        thread = self._idle_threads.pop() if self._idle_threads else RequestThread()
        try:
            async with ThreadSensitiveContext(executor=thread):
                await self.handle(scope, receive, send)
        finally:
            # A request whose client went away may leave its view running: that thread is not reused
            # (the next request would wait for it); it ends once the view returns.
            if thread.is_idle() and len(self._idle_threads) < IDLE_REQUEST_THREADS_MAX:
                self._idle_threads.append(thread)  # last in, first out: the warmest thread serves next
            else:
                thread.shutdown(wait=False)
