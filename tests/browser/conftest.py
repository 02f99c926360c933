"""Playwright on Debian's Chromium against pytest-django's live server.

The browser is found at CHROMIUM_PATH (default /usr/bin/chromium). Where it is missing the
browser tests are skipped with that reason, except when LLMBENCH_REQUIRE_BROWSER=1 (set by
.ci/run), where a missing browser fails the run.
"""

import os
import shutil

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        if os.environ.get("LLMBENCH_REQUIRE_BROWSER") == "1":
            pytest.fail(f"No Chromium at {CHROMIUM}: install Debian's chromium package.")
        pytest.skip(f"No Chromium at {CHROMIUM} (apt-get install chromium); browser tests not run.")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in the test thread; the ORM calls the
    # tests make beside it (factories, assertions, database teardown) are still synchronous.
    # Allowed for this module only, while the browser is up.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def log_in(page, username: str, password: str = "pass-word-123") -> None:
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)


@pytest.fixture
def asgi_server(transactional_db):
    """The real ASGI application (HTTP and websockets) under uvicorn in a thread, on a free port."""
    import socket
    import threading
    import time

    import uvicorn

    from llmbench.asgi import application

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def demo(transactional_db):
    """The demo team (simulated data shown by default), its login `demo` and all its data. Loaded in a thread: the
    demo runs its experiments through async_to_sync, which cannot run beside Playwright's event loop."""
    import threading

    from django.core.management import call_command

    from tests.threaded import closing_connection

    with open(os.devnull, "w") as quiet:
        loader = threading.Thread(target=closing_connection(call_command), args=["load_demo"], kwargs={"stdout": quiet})
        loader.start()
        loader.join()
    return "demo"
