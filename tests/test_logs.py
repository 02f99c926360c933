"""Structured logs: with LOG_FORMAT=json every record is one JSON object carrying the request id, and
each request writes one line (logger "llmbench.request") naming method, route, path, status, duration,
user, team and client address. The lines are read from the site's own console handler, formatted by
the formatter the settings configure."""

import io
import json
import logging
import logging.config
import re
import uuid
from datetime import datetime

import pytest

REQUEST_FIELDS = {"method", "route", "path", "status", "duration_ms", "user", "team", "client_ip"}
RECORD_FIELDS = {"time", "level", "logger", "message", "request_id"}


class Captured:
    """What the console handler wrote, as lines or as JSON objects."""

    def __init__(self, stream: io.StringIO):
        self.stream = stream

    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.lines()]

    def requests(self) -> list[dict]:
        return [r for r in self.records() if r["logger"] == "llmbench.request"]


def _console() -> logging.Handler:
    return next(h for h in logging.getLogger().handlers if h.get_name() == "console")


def _configured_formatter(settings, name: str) -> logging.Formatter:
    """The formatter `name` exactly as settings.LOGGING declares it (what LOG_FORMAT selects)."""
    return logging.config.DictConfigurator({}).configure_formatter(dict(settings.LOGGING["formatters"][name]))


@pytest.fixture
def console(settings):
    """The console handler writing into a string, yielding a function that selects its format."""
    handler = _console()
    stream = io.StringIO()
    old_stream, old_formatter = handler.setStream(stream), handler.formatter

    def use(name: str) -> Captured:
        handler.setFormatter(_configured_formatter(settings, name))
        return Captured(stream)

    yield use
    handler.setStream(old_stream)
    handler.setFormatter(old_formatter)


@pytest.fixture
def json_log(console):
    return console("json")


@pytest.mark.django_db
def test_a_request_writes_one_json_line_with_every_field(client, json_log):
    response = client.get("/health")
    [line] = json_log.requests()
    assert set(line) == RECORD_FIELDS | REQUEST_FIELDS
    assert line["level"] == "INFO"
    assert (line["method"], line["route"], line["path"], line["status"]) == ("GET", "health", "/health", 200)
    assert (line["user"], line["team"], line["client_ip"]) == (None, None, "127.0.0.1")
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["request_id"] == response["X-Request-ID"] and re.fullmatch(r"[0-9a-f]{32}", line["request_id"])
    assert line["time"].endswith("Z")  # ISO 8601, UTC
    assert datetime.fromisoformat(line["time"]).utcoffset().total_seconds() == 0
    assert line["message"] == f"GET /health 200 {line['duration_ms']:.1f}ms user=- team=- ip=127.0.0.1"


@pytest.mark.django_db
def test_an_incoming_request_id_is_kept_echoed_and_logged(client, json_log):
    request_id = str(uuid.uuid4())
    response = client.get("/health", HTTP_X_REQUEST_ID=request_id)
    assert response["X-Request-ID"] == request_id
    assert [line["request_id"] for line in json_log.requests()] == [request_id]


@pytest.mark.django_db
def test_a_request_id_that_is_no_uuid_is_replaced_by_a_new_one(client, json_log):
    response = client.get("/health", HTTP_X_REQUEST_ID="robert'); DROP TABLE students;--")
    new_id = response["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", new_id)
    assert [line["request_id"] for line in json_log.requests()] == [new_id]


@pytest.mark.django_db
def test_an_api_token_request_names_its_user_and_team(member_api, member, json_log):
    """Token requests are authenticated inside the view: the line is written after it, so it knows."""
    response = member_api.get("/api/v1/me")
    assert response.status_code == 200
    [line] = json_log.requests()
    assert (line["user"], line["team"], line["route"], line["status"]) == (member.username, "alpha", "api/v1/me", 200)
    assert f"user={member.username} team=alpha" in line["message"]


@pytest.mark.django_db
def test_a_signed_in_page_names_its_user_and_active_team(member_client, member, json_log):
    assert member_client.get("/").status_code == 200
    [line] = json_log.requests()
    assert (line["user"], line["team"], line["route"], line["path"]) == (
        member.username,
        "alpha",
        "home",
        "/",
    )  # the empty pattern: its name, as in /metrics


@pytest.mark.django_db
def test_a_refused_token_logs_the_refusal_without_a_user(anon_api, json_log):
    anon_api.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    status = anon_api.get("/api/v1/me").status_code
    assert status in (401, 429)
    [line] = json_log.requests()
    assert (line["status"], line["user"], line["team"]) == (status, None, None)


@pytest.mark.django_db
def test_every_record_of_a_request_carries_its_id(client, json_log):
    """Django's own warning about a 404 is written during the request: it has the request's id."""
    response = client.get("/no-such-page/")
    records = json_log.records()
    warning = next(r for r in records if r["logger"] == "django.request")
    [line] = json_log.requests()
    assert warning["request_id"] == line["request_id"] == response["X-Request-ID"]
    assert warning["level"] == "WARNING" and warning["status_code"] == 404 and "request" not in warning
    assert (line["status"], line["route"], line["path"]) == (404, None, "/no-such-page/")


@pytest.mark.django_db
def test_the_client_behind_the_trusted_proxy_is_the_logged_address(client, json_log, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    client.get("/health", HTTP_X_FORWARDED_FOR="203.0.113.7, 198.51.100.2", REMOTE_ADDR="10.0.0.1")
    [line] = json_log.requests()
    assert line["client_ip"] == "198.51.100.2"  # what the one trusted proxy saw; the left part is the client's say


def test_an_exception_is_in_the_record_and_a_record_outside_a_request_has_no_id(json_log):
    log = logging.getLogger("llmbench.tests")
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        log.exception("could not divide %s", "1 by 0", extra={"run_id": 7})
    [record] = json_log.records()
    assert record["message"] == "could not divide 1 by 0" and record["level"] == "ERROR"
    assert record["logger"] == "llmbench.tests" and record["run_id"] == 7
    assert record["request_id"] is None
    assert record["exception"].startswith("Traceback") and "ZeroDivisionError: division by zero" in record["exception"]


@pytest.mark.django_db
def test_log_requests_off_writes_no_request_line(client, json_log, settings):
    settings.LOG_REQUESTS = False
    assert client.get("/health").status_code == 200
    assert json_log.requests() == []


@pytest.mark.django_db
def test_the_plain_format_is_one_readable_line_with_the_request_id(member_api, member, console):
    plain = console("plain")
    response = member_api.get("/api/v1/me")
    [line] = [line for line in plain.lines() if " llmbench.request " in line]
    request_id = response["X-Request-ID"]
    pattern = (
        rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d{{3}} INFO \[{request_id}\] llmbench.request "
        rf"GET /api/v1/me 200 \d+\.\dms user={member.username} team=alpha ip=127\.0\.0\.1"
    )
    assert re.fullmatch(pattern, line), line
