"""The ASGI handler (llmbench/asgi_handler.py): one sync call per request on a reused request thread,
with the whole middleware stack and async views working as under Django's own handler."""

import asyncio
import gc
import threading
import warnings

import pytest
from django.http import HttpResponse, StreamingHttpResponse
from django.test import override_settings
from django.urls import path

from llmbench.asgi_handler import RequestGate, RequestThread, SyncChainASGIHandler

pytestmark = pytest.mark.django_db(transaction=True)  # the request threads use their own connections


def thread_view(request):
    return HttpResponse(str(threading.get_ident()))


async def async_stream_view(request):
    async def chunks():
        for part in (b"one ", b"two"):
            yield part

    return StreamingHttpResponse(chunks(), content_type="text/plain")


_busy = {"now": 0, "most": 0}
_busy_lock = threading.Lock()


def busy_view(request):
    with _busy_lock:
        _busy["now"] += 1
        _busy["most"] = max(_busy["most"], _busy["now"])
    threading.Event().wait(0.2)
    with _busy_lock:
        _busy["now"] -= 1
    return HttpResponse("done")


urlpatterns = [path("thread", thread_view), path("stream", async_stream_view), path("busy", busy_view)]


def _get(handler, path_: str) -> tuple[int, dict[bytes, bytes], bytes]:
    """One GET through the ASGI application, as uvicorn calls it."""
    return asyncio.run(_get_async(handler, path_))


async def _get_async(handler, path_: str) -> tuple[int, dict[bytes, bytes], bytes]:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": path_, "raw_path": path_.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    sent: list[dict] = []
    body_read = asyncio.Event()

    async def receive():
        if not body_read.is_set():
            body_read.set()
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays connected; the handler cancels this wait

    async def send(message):
        sent.append(message)

    await handler(scope, receive, send)
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


def _gate_trace(gate: RequestGate, durations_s: list[float]) -> list[tuple[str, int]]:
    """Runs one call per duration through `gate`, started in that order; returns the start/end events."""
    events: list[tuple[str, int]] = []

    async def call(index: int, duration_s: float):
        events.append(("start", index))
        await asyncio.sleep(duration_s)
        events.append(("end", index))
        return index

    async def run():
        tasks = []
        for index, duration_s in enumerate(durations_s):
            tasks.append(asyncio.ensure_future(gate.run(call(index, duration_s))))
            await asyncio.sleep(0)  # arrival order
        assert await asyncio.gather(*tasks) == list(range(len(durations_s)))

    asyncio.run(run())
    return events


def test_the_gate_runs_one_request_at_a_time_in_arrival_order():
    events = _gate_trace(RequestGate(slow_s=5), [0.02, 0.01, 0.0, 0.01])
    assert events == [(kind, i) for i in range(4) for kind in ("start", "end")]


def test_a_slow_request_lets_the_next_one_start_beside_it():
    events = _gate_trace(RequestGate(slow_s=0.05), [0.5, 0.01, 0.01])
    # The first holds the turn for 50 ms only; the other two then take turns while it still runs.
    assert events == [("start", 0), ("start", 1), ("end", 1), ("start", 2), ("end", 2), ("end", 0)]


def test_without_a_slow_limit_every_request_starts_at_once():
    events = _gate_trace(RequestGate(slow_s=0), [0.03, 0.02, 0.01])
    assert events[:3] == [("start", 0), ("start", 1), ("start", 2)]


def test_a_cancelled_request_gives_its_turn_back():
    async def run():
        gate = RequestGate(slow_s=5)
        first = asyncio.ensure_future(gate.run(asyncio.sleep(10)))
        await asyncio.sleep(0.01)
        first.cancel()  # the client went away
        return await asyncio.wait_for(gate.run(asyncio.sleep(0, result="next")), timeout=2)

    assert asyncio.run(run()) == "next"


@pytest.mark.parametrize(("slow_ms", "most_at_once"), [(5000, 1), (0, 3)])
def test_requests_through_the_handler_take_turns_unless_the_gate_is_off(settings, slow_ms, most_at_once):
    settings.WEB_SLOW_REQUEST_MS = slow_ms
    with override_settings(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["127.0.0.1"]):
        handler = SyncChainASGIHandler()

        async def three_at_once():  # on one event loop, as in a uvicorn process
            answers = await asyncio.gather(*(_get_async(handler, "/busy") for _ in range(3)))
            assert [status for status, _, _ in answers] == [200, 200, 200]

        _busy["now"] = _busy["most"] = 0
        asyncio.run(three_at_once())
    assert _busy["most"] == most_at_once


def test_a_request_whose_client_leaves_while_it_waits_never_runs():
    ran = []

    async def view():
        ran.append(True)

    async def run():
        gate = RequestGate(slow_s=5)
        first = asyncio.ensure_future(gate.run(asyncio.sleep(0.2)))
        await asyncio.sleep(0.01)
        waiting = asyncio.ensure_future(gate.run(view()))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await first

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(run())
        gc.collect()
    assert ran == []
    assert not [w for w in caught if "never awaited" in str(w.message)]  # it was closed, not dropped


def test_one_gate_serves_several_event_loops():
    # A test server may run the same application on a loop of its own, one after another or at once.
    gate = RequestGate(slow_s=5)

    def one_loop():
        return asyncio.run(gate.run(asyncio.sleep(0.01, result="ok")))

    assert one_loop() == "ok"
    results = []
    threads = [threading.Thread(target=lambda: results.append(one_loop())) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert results == ["ok"] * 3
