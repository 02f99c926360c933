"""/health, /ready, /metrics, the OpenAPI schema and docs, and start-up settings checks."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from llmbench import views

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db


def test_health_answers_without_login(client):
    response = client.get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_health_rejects_post(client):
    assert client.post("/health").status_code == 405


def test_ready_checks_every_dependency(client):
    response = client.get("/ready")
    assert response.status_code == 200
    checks = response.json()["checks"]
    assert {k: v for k, v in checks.items() if k != "task_cluster"} == {
        "database": "ok", "cache": "ok", "channel_layer": "ok", "broker": "ok",
    }  # fmt: skip
    # no worker runs in the tests, and with nothing waiting that is fine (tests/test_ready.py has the rest)
    assert checks["task_cluster"].startswith("ok: no task worker is running; no task waits")


def test_ready_is_503_naming_what_failed(client, monkeypatch):
    def broken():
        raise ConnectionError("redis is down")

    monkeypatch.setitem(views.READINESS_CHECKS, "cache", broken)
    response = client.get("/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["cache"] and "redis is down" in body["checks"]["cache"]
    assert body["checks"]["database"] == "ok"


def test_metrics_count_requests_by_route_and_report_queue_depth(client):
    client.get("/health")
    client.get("/health")
    response = client.get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    line = next(
        row for row in text.splitlines() if row.startswith('llmbench_http_requests_total{method="GET",route="health"')
    )
    assert float(line.rsplit(" ", 1)[1]) >= 2
    assert "llmbench_http_request_duration_seconds_bucket" in text
    assert "llmbench_task_queue_depth" in text


def test_metrics_ask_for_the_token_when_one_is_set(client, settings):
    settings.METRICS_TOKEN = "s3cret"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_the_openapi_schema_lists_the_endpoints(client, member):
    client.force_login(member)
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ["/api/v1/scores/import", "/api/v1/scores/leaderboard", "/api/v1/scores/quantization", "/api/v1/me"]:
        assert any(p.rstrip("/") == path for p in paths), path


def test_the_api_docs_page_loads_its_assets_locally(client, member):
    client.force_login(member)
    response = client.get("/api/docs/")
    assert response.status_code == 200 and b"drf_spectacular_sidecar" in response.content


def _django(args: list[str], env: dict) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_refuses_to_start_without_an_encryption_key_list():
    result = _django(["check"], {"DEBUG": "false", "SECRET_KEY": "x7Hq2" * 12, "ALLOWED_HOSTS": "example.com"})
    assert result.returncode != 0 and "LLMBENCH_ENCRYPTION_KEYS is not set" in result.stderr


def test_production_refuses_to_start_without_a_secret_key():
    result = _django(["check"], {"DEBUG": "false"})
    assert result.returncode != 0 and "SECRET_KEY is not set" in result.stderr


def test_a_malformed_boolean_setting_fails_loudly():
    result = _django(["check"], {"DEBUG": "maybe"})
    assert result.returncode != 0 and "DEBUG='maybe' is not a boolean" in result.stderr


# The README's production settings (section Production).
PRODUCTION_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": "x7Hq2" * 12,
    "ALLOWED_HOSTS": "llmbench.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://llmbench.example.com",
    "LLMBENCH_ENCRYPTION_KEYS": "q0bVZhHZr1_fh7t1yhXfYb0g3JVK6bXmLkRvX0C3H5w=",
    "METRICS_TOKEN": "m" * 32,
}


def test_check_deploy_passes_with_the_documented_production_settings():
    result = _django(["check", "--deploy", "--fail-level", "WARNING"], PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_deploy_passes_with_the_team_service_settings():
    """The production settings of the README with single sign-on only, a proxy, JSON logs and tracing on."""
    env = {
        **PRODUCTION_ENV,
        "SECURE_PROXY_SSL_HEADER": "true",
        "TRUSTED_PROXY_COUNT": "1",
        "OIDC_ISSUER": "https://sso.example.com/realms/acme",
        "OIDC_CLIENT_ID": "llmbench",
        "OIDC_CLIENT_SECRET": "s" * 32,
        "OIDC_GROUP_MAP": "ml-platform=platform:admin;ml-research=research:member",
        "PASSWORD_LOGIN": "false",
        "LOG_FORMAT": "json",
        "READY_CHECK_PROVIDERS": "report",
        # a collector that is not there: start-up and the checks must not depend on it
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
    }
    result = _django(["check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PASSWORD_LOGIN": "false"}, "PASSWORD_LOGIN=false needs single sign-on"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT='xml'"),
        ({"READY_CHECK_PROVIDERS": "always"}, "READY_CHECK_PROVIDERS='always'"),
        ({"THROTTLE_RATE_EXPORTS": "lots"}, "llmbench.E001"),
        (
            {"OIDC_ISSUER": "https://sso.example.com", "OIDC_CLIENT_ID": "x", "OIDC_GROUP_MAP": "a=b:boss"},
            "accounts.E001",
        ),
    ],
)
def test_a_bad_team_service_setting_stops_start_up_naming_it(env, message):
    result = _django(["check"], env)
    assert result.returncode != 0 and message in result.stdout + result.stderr


@pytest.mark.skipif(not settings.REDIS_URL, reason="only the Redis channel layer blocks on a socket")
def test_the_redis_channel_layer_waits_longer_than_its_blocking_pop():
    """channels-redis pops with a 5 s timeout and redis-py reads with a 5 s default: the layer's
    socket must outwait the pop, or an idle consumer dies with a TimeoutError."""
    import asyncio

    from channels.layers import get_channel_layer

    async def idle() -> str:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        try:
            await asyncio.wait_for(layer.receive(channel), timeout=7)
        except TimeoutError as exc:
            return type(exc).__module__  # asyncio's wait_for, not redis
        return "received"

    assert asyncio.run(idle()) == "builtins"
