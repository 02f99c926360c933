"""Sending one attempt of a delivery: a signed webhook POST or an e-mail. No database access here: the service
records what each attempt answered.

Webhooks go out through http.client to the address check_webhook_url approved (no redirects followed, no proxy),
with the headers docs/notifications.md documents:
    X-Llmbench-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>"""

import hashlib
import hmac
import http.client
import json
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMessage

from apps.notifications.urlcheck import Address, UrlRefused, UrlUnresolved, check_webhook_url

RESPONSE_KEEP_BYTES = 2048
USER_AGENT = "llmbench-webhooks/1"
RETRY_STATUS = {408, 429}


@dataclass(frozen=True)
class AttemptResult:
    """What one try answered: sent, retry (a passing failure) or failed (no use trying again)."""

    outcome: str  # "sent" | "retry" | "failed"
    status_code: int | None
    response: str
    duration_ms: float


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Llmbench-Signature value: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" under the secret>."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def encode_body(body: dict) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address that was checked, whatever the host name resolves to by now."""

    def __init__(self, host: str, port: int | None, address: Address, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = str(address)

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """The same over TLS: the certificate is checked against the host name, as usual."""

    def __init__(self, host: str, port: int | None, address: Address, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = str(address)

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _outcome_of_status(status: int) -> str:
    if 200 <= status < 300:
        return "sent"
    if status in RETRY_STATUS or status >= 500:
        return "retry"
    return "failed"


def webhook_post(*, url: str, secret: str, event: str, delivery_key: str, body: dict) -> AttemptResult:
    """POST `body` as JSON to `url`, signed; 2xx = sent, 408/429/5xx/timeouts/refused = retry, other = failed."""
    payload = encode_body(body)
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        "X-Llmbench-Event": event,
        "X-Llmbench-Delivery": delivery_key,
        "X-Llmbench-Timestamp": timestamp,
    }
    if secret:
        headers["X-Llmbench-Signature"] = sign(secret, timestamp, payload)
    started = time.perf_counter()

    def took() -> float:
        return round((time.perf_counter() - started) * 1000, 1)

    try:
        addresses = check_webhook_url(url, must_resolve=True)
    except UrlUnresolved as exc:
        return AttemptResult("retry", None, str(exc), took())
    except UrlRefused as exc:
        return AttemptResult("failed", None, f"Refused: {exc}", took())
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection_class = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    connection = connection_class(parts.hostname, parts.port, addresses[0], timeout=settings.NOTIFY_TIMEOUT_S)
    try:
        connection.request("POST", path, body=payload, headers=headers)
        response = connection.getresponse()
        excerpt = response.read(RESPONSE_KEEP_BYTES).decode("utf-8", errors="replace")
        status = response.status
    except TimeoutError:
        return AttemptResult("retry", None, f"No answer within {settings.NOTIFY_TIMEOUT_S} s.", took())
    except ConnectionRefusedError:
        return AttemptResult("retry", None, "Connection refused.", took())
    except ssl.SSLCertVerificationError as exc:
        return AttemptResult("failed", None, f"TLS certificate refused: {exc.verify_message or exc}.", took())
    except (OSError, http.client.HTTPException) as exc:
        return AttemptResult("retry", None, f"{type(exc).__name__}: {exc}"[:RESPONSE_KEEP_BYTES], took())
    finally:
        connection.close()
    if 300 <= status < 400:
        excerpt = f"Redirects are not followed (to {response.getheader('Location', '?')}). {excerpt}"
    return AttemptResult(_outcome_of_status(status), status, excerpt[:RESPONSE_KEEP_BYTES], took())


def _smtp_code(exc: smtplib.SMTPException) -> int | None:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _message in exc.recipients.values()]
        return min(codes) if codes else None
    return getattr(exc, "smtp_code", None)


def email_send(*, to: str, subject: str, text: str) -> AttemptResult:
    """Send one e-mail through Django's backend (fail_silently=False): a 5xx refusal = failed, anything else
    that goes wrong (server down, refusing connections, 4xx) = retry."""
    started = time.perf_counter()

    def took() -> float:
        return round((time.perf_counter() - started) * 1000, 1)

    message = EmailMessage(subject=subject, body=text, from_email=settings.DEFAULT_FROM_EMAIL, to=[to])
    try:
        message.send(fail_silently=False)
    except smtplib.SMTPException as exc:
        code = _smtp_code(exc)
        outcome = "failed" if code is not None and 500 <= code < 600 else "retry"
        return AttemptResult(outcome, code, f"{type(exc).__name__}: {exc}"[:RESPONSE_KEEP_BYTES], took())
    except ConnectionRefusedError:
        return AttemptResult("retry", None, "The mail server refused the connection.", took())
    except OSError as exc:
        return AttemptResult("retry", None, f"{type(exc).__name__}: {exc}"[:RESPONSE_KEEP_BYTES], took())
    return AttemptResult("sent", None, "Accepted by the mail server.", took())
