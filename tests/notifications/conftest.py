"""Fixtures of the notification tests: a real local webhook receiver, a closed port, the test as the worker."""

import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from apps.notifications.models import Channel
from apps.notifications.services import channel_create


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: keeps every POST and answers with the next planned status (then 200)."""

    server: ThreadingHTTPServer
    planned: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=abc"


def _handler(receiver_ref: list) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            receiver: Receiver = receiver_ref[0]
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with receiver.lock:
                receiver.received.append(Received(self.path, dict(self.headers.items()), body))
                status = receiver.planned.pop(0) if receiver.planned else 200
            answer = json.dumps({"ok": 200 <= status < 300, "status": status}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def receiver():
    ref: list = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ref))
    ref.append(Receiver(server))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield ref[0]
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on (bound then released: connecting to it is refused)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture(autouse=True)
def _notify_settings(settings):
    """Local receivers allowed, 3 tries, short time limits, test outbox e-mail."""
    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = True
    settings.NOTIFY_MAX_ATTEMPTS = 3
    settings.NOTIFY_RETRY_BASE_S = 30
    settings.NOTIFY_TIMEOUT_S = 3
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SITE_URL = "https://llmbench.example.com"


@pytest.fixture
def queued(monkeypatch):
    """The test is the worker: the delivery ids notify() and the sweep hand to async_task."""
    calls: list[int] = []

    def fake_async_task(func, *args, **kwargs):
        assert func == "apps.notifications.tasks.delivery_send"
        calls.extend(args)

    monkeypatch.setattr("apps.notifications.services.async_task", fake_async_task)
    return calls


@pytest.fixture
def webhook(team, admin_user, receiver):
    """A generic-JSON webhook channel carrying every event, and its secret (shown once)."""
    from apps.notifications.events import EVENTS

    channel, secret = channel_create(
        team=team, user=admin_user, name="Ops hook", kind=Channel.Kind.WEBHOOK, url=receiver.url,
        fmt=Channel.Format.GENERIC, events=list(EVENTS),
    )  # fmt: skip
    return channel, secret
