"""CORS for API clients on other origins: off unless CORS_ALLOWED_ORIGINS lists the origin, only
under /api/, tokens (not cookies) across origins."""

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db

CI = "https://ci.example.com"
ALLOWED = override_settings(CORS_ALLOWED_ORIGINS=[CI])


def preflight(client, path: str, origin: str):
    return client.options(
        path, HTTP_ORIGIN=origin, HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization",
    )  # fmt: skip


@override_settings(CORS_ALLOWED_ORIGINS=[])
def test_without_allowed_origins_no_origin_is_allowed(client, member_api):
    """With the setting empty (the default) neither a preflight nor a request gets CORS headers."""
    assert "Access-Control-Allow-Origin" not in preflight(client, "/api/v1/experiments", CI)
    response = member_api.get("/api/v1/experiments", HTTP_ORIGIN=CI)
    assert response.status_code == 200 and "Access-Control-Allow-Origin" not in response


@ALLOWED
def test_a_listed_origin_may_call_the_api_with_a_token(client, member_api):
    """The preflight allows the origin and the Authorization header; the call itself carries the origin."""
    response = preflight(client, "/api/v1/experiments", CI)
    assert response.status_code == 200 and response["Access-Control-Allow-Origin"] == CI
    assert "authorization" in response["Access-Control-Allow-Headers"].lower()
    assert "GET" in response["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in response  # tokens, not cookies
    call = member_api.get("/api/v1/experiments", HTTP_ORIGIN=CI)
    assert call.status_code == 200 and call["Access-Control-Allow-Origin"] == CI


@ALLOWED
def test_another_origin_is_not_allowed(client, member_api):
    """An origin not in the list gets no Access-Control-Allow-Origin."""
    assert "Access-Control-Allow-Origin" not in preflight(client, "/api/v1/experiments", "https://evil.example.com")
    assert "Access-Control-Allow-Origin" not in member_api.get(
        "/api/v1/experiments", HTTP_ORIGIN="https://evil.example.com"
    )


@ALLOWED
@pytest.mark.parametrize("path", ["/experiments/", "/health", "/login/", "/admin/login/"])
def test_pages_outside_the_api_never_get_cors_headers(member_client, path):
    """Even a listed origin gets no CORS headers on pages, only on /api/."""
    assert "Access-Control-Allow-Origin" not in preflight(member_client, path, CI)
    assert "Access-Control-Allow-Origin" not in member_client.get(path, HTTP_ORIGIN=CI)
