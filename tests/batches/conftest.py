import pytest


@pytest.fixture
def queued(monkeypatch):
    """The chunk tasks the batch services queue, instead of queueing them."""
    calls: list[tuple] = []
    monkeypatch.setattr("apps.batches.services.job_submit", lambda **kw: calls.append((kw["func"], *kw["args"])))
    return calls


@pytest.fixture
def sim_calls(monkeypatch):
    """Every request the simulator answers, as (temperature, top_p, max_tokens)."""
    from apps.providers.engine.sim import SimAdapter

    calls: list[tuple] = []
    original = SimAdapter.generate

    async def counted(self, session, request):
        calls.append((request.temperature, request.top_p, request.max_tokens))
        return await original(self, session, request)

    monkeypatch.setattr(SimAdapter, "generate", counted)
    return calls


@pytest.fixture
def counting_mockllm():
    """`manage.py mockllm`'s server in a thread, counting chat requests by their sampling
    parameters: yields (base URL, Counter of (temperature, top_p, max_tokens))."""
    from collections import Counter

    from aiohttp import web

    from apps.providers.mockllm import MockProfile, make_app
    from tests.threaded import running_in_thread

    calls: Counter = Counter()

    @web.middleware
    async def count(request, handler):
        if request.path.endswith("/chat/completions"):
            body = await request.json()
            calls[(body.get("temperature"), body.get("top_p"), body.get("max_tokens"))] += 1
        return await handler(request)

    async def start():
        app = make_app(MockProfile(ttft_ms=150, itl_ms=5, output_tokens=12))
        app.middlewares.append(count)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    async def stop(runner):
        await runner.cleanup()

    with running_in_thread(start, stop) as runner:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1", calls
