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
  thread-sensitive work (its database connection lives there, and requests waiting on the database
  overlap), but the thread is reused rather than started and joined per request.
"""

from concurrent.futures import Future, ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, sync_to_async
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


class SyncChainASGIHandler(ASGIHandler):
    """ASGIHandler whose middleware chain and views run in one sync call per request, on a reused thread."""

    def __init__(self):
        self._idle_threads: list[RequestThread] = []
        super().__init__()

    def load_middleware(self, is_async=False):
        # ASGIHandler asks for the async chain; build the sync one (see the module docstring).
        super().load_middleware(is_async=False)

    async def get_response_async(self, request):
        # BaseHandler.get_response is the sync twin of get_response_async (urlconf, chain, error log).
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)

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
