"""The endpoints table at 1366×900 in Chromium: the last test (with a long provider message) and
the "Test connection" button stay on screen without scrolling."""

import pytest
from django.utils import timezone

from apps.providers.models import ProviderEndpoint
from tests.browser.conftest import browser, log_in  # noqa: F401  (the module-scoped browser fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LONG_MESSAGE = (
    "Could not connect: ClientConnectorError: Cannot connect to host inference-gateway.internal.example.com:8443 "
    "ssl:default [Connect call failed ('10.20.30.40', 8443)] after 3 attempts within the 10 s connect timeout"
)


def test_last_test_and_test_connection_are_on_screen_at_1366(browser, live_server, admin_user, team):  # noqa: F811
    """With a long failure message and long model names, both columns are fully inside 1366 px."""
    for i in range(3):
        ProviderEndpoint.objects.create(
            team=team, name=f"gateway-{i}-with-a-rather-long-name", kind="openai_compatible",
            base_url="https://inference-gateway.internal.example.com:8443/v1",
            model_names=["meta-llama/Llama-3.1-70B-Instruct-FP8-dynamic", "Qwen/Qwen2.5-72B-Instruct-AWQ"],
            requests_per_minute=6000, tokens_per_minute=2_000_000, max_concurrency=256,
            last_test_at=timezone.now(), last_test_ok=False, last_test_message=LONG_MESSAGE,
        )  # fmt: skip
    admin_user.set_password("pass-word-123")
    admin_user.save()
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    log_in(page, admin_user.username)
    page.goto("/providers/")
    table = page.locator("table").first  # the endpoints table (id "endpoints-table")
    for header in ("Last test", "Test connection"):
        box = table.locator("th", has_text=header).first.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 1366, (header, box)
    button = table.locator("button", has_text="Test connection").first.bounding_box()
    assert button["x"] + button["width"] <= 1366
    context.close()
