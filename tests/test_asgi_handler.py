"""The ASGI handler (llmbench/asgi_handler.py): one sync call per request on a reused request thread,
with the whole middleware stack and async views working as under Django's own handler."""

import asyncio
import threading

import pytest
from django.http import HttpResponse, StreamingHttpResponse
from django.test import override_settings
from django.urls import path

from llmbench.asgi_handler import RequestThread, SyncChainASGIHandler

pytestmark = pytest.mark.django_db(transaction=True)  # the request threads use their own connections


def thread_view(request):
    return HttpResponse(str(threading.get_ident()))


async def async_stream_view(request):
    async def chunks():
        for part in (b"one ", b"two"):
            yield part

    return StreamingHttpResponse(chunks(), content_type="text/plain")


urlpatterns = [path("thread", thread_view), path("stream", async_stream_view)]


def _get(handler, path_: str) -> tuple[int, dict[bytes, bytes], bytes]:
    """One GET through the ASGI application, as uvicorn calls it."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": path_, "raw_path": path_.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    sent: list[dict] = []

    async def run():
        body_read = asyncio.Event()

        async def receive():
            if not body_read.is_set():
                body_read.set()
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.Event().wait()  # the client stays connected; the handler cancels this wait

        async def send(message):
            sent.append(message)

        await handler(scope, receive, send)

    asyncio.run(run())
    start = sent[0]
    return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


@pytest.fixture
def handler():
    with override_settings(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["127.0.0.1"]):
        yield SyncChainASGIHandler()


def test_middleware_chain_is_built_sync_so_a_request_crosses_to_its_thread_once(handler):
    # Django's handler builds the async chain: every sync-only middleware (and every MiddlewareMixin
    # in async mode) is a hop between the event loop and a thread.
    assert not asyncio.iscoroutinefunction(handler._middleware_chain)


def test_request_threads_are_reused(handler):
    # Django's handler starts (and joins) a new thread for every request.
    first = _get(handler, "/thread")
    second = _get(handler, "/thread")
    assert first[0] == second[0] == 200
    assert first[2] == second[2]
    assert first[2] != str(threading.get_ident()).encode()  # not the event loop's thread


def test_the_whole_middleware_stack_still_answers(handler):
    status, headers, _ = _get(handler, "/thread")
    assert status == 200
    assert headers[b"X-Request-ID"]  # django-guid, the first middleware
    assert b"Content-Security-Policy" in headers  # django-csp
    assert headers[b"X-Frame-Options"] == b"DENY"  # the last Django middleware but one


def test_async_views_stream_through_the_sync_chain(handler):
    status, _, body = _get(handler, "/stream")
    assert (status, body) == (200, b"one two")


def test_non_http_scopes_are_refused(handler):
    with pytest.raises(ValueError, match="websocket"):
        asyncio.run(handler({"type": "websocket"}, None, None))


def test_a_busy_request_thread_is_not_idle():
    thread = RequestThread()
    release = threading.Event()
    try:
        assert thread.is_idle()
        done = thread.submit(release.wait)
        assert not thread.is_idle()  # a view left running by a client that went away
        release.set()
        done.result(timeout=10)
        assert thread.is_idle()
    finally:
        release.set()
        thread.shutdown()
