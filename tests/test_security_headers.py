"""Content-Security-Policy on every page (a per-request nonce on each inline script and style, no inline
event handlers), the API schema and docs behind a login unless API_DOCS_PUBLIC, and the deploy checks."""

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
HEADER = "Content-Security-Policy"
HEADER_REPORT_ONLY = "Content-Security-Policy-Report-Only"
# Script types a browser executes (and so CSP governs); json_script's application/json is data.
EXECUTED_SCRIPT_TYPES = {"", "text/javascript", "module", "application/javascript"}


class _InlineCode(HTMLParser):
    """Collects inline <script> and <style> elements (with their nonce) and inline event handlers."""

    def __init__(self):
        super().__init__()
        self.inline: list[tuple[str, str | None]] = []
        self.handlers: list[str] = []

    def handle_starttag(self, tag, attrs):
        found = dict(attrs)
        if tag == "script" and "src" not in found and (found.get("type") or "").lower() in EXECUTED_SCRIPT_TYPES:
            self.inline.append(("script", found.get("nonce")))
        if tag == "style":
            self.inline.append(("style", found.get("nonce")))
        for name, value in attrs:
            if re.fullmatch(r"on[a-z]+|hx-on.*", name) or (value or "").strip().lower().startswith("javascript:"):
                self.handlers.append(f"<{tag} {name}={value!r}>")


def _policy(response, header: str = HEADER) -> dict[str, list[str]]:
    """The policy header parsed into directive → sources."""
    assert header in response, f"no {header} header on {response.wsgi_request.path}"
    directives = (part.split() for part in response[header].split(";") if part.strip())
    return {d[0]: d[1:] for d in directives}


def _nonce(policy: dict[str, list[str]], directive: str) -> str | None:
    found = [s for s in policy.get(directive, []) if s.startswith("'nonce-")]
    return found[0][len("'nonce-") : -1] if found else None


def _assert_strict(response) -> None:
    """The page is under the enforcing policy, every inline script/style carries this response's nonce
    and no element has an inline event handler."""
    policy = _policy(response)
    assert policy["script-src"][0] == "'self'"
    assert not {"'unsafe-inline'", "'unsafe-eval'"} & set(policy["script-src"]), policy["script-src"]
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    parser = _InlineCode()
    parser.feed(response.content.decode())
    assert not parser.handlers, parser.handlers
    for kind, nonce in parser.inline:
        expected = _nonce(policy, f"{kind}-src")
        assert expected and nonce == expected, (response.wsgi_request.path, kind, nonce, expected)


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/scores/",
        "/scores/quantization/",
        "/scores/import/",
        "/performance/",
        "/performance/runs/",
        "/performance/predict/",
        "/providers/",
        "/providers/new/",
        "/experiments/",
        "/experiments/testcases/",
        "/batches/",
        "/batches/new/",
        "/analytics/",
        "/analytics/leaderboard/",
        "/account/tokens/",
        "/admin/",
        "/api/docs/",
    ],
)
def test_each_page_carries_a_strict_policy_whose_nonce_matches_its_inline_code(admin_client_team, path):
    """Every page: enforcing policy, nonce on inline code, no onclick= and the like."""
    response = admin_client_team.get(path)
    assert response.status_code == 200, path
    _assert_strict(response)


def test_the_login_page_has_the_policy_for_anonymous_visitors(client):
    response = client.get("/login/")
    assert response.status_code == 200
    _assert_strict(response)


def test_the_policy_lists_the_directives_the_pages_rely_on(member_client):
    """Same-origin everything, data: images (ECharts exports, Swagger UI icons); 'self' in connect-src
    also covers the pages' ws:/wss: connections to /ws/ (CSP Level 3)."""
    policy = _policy(member_client.get("/"))
    assert policy["default-src"] == ["'self'"]
    assert policy["img-src"] == ["'self'", "data:"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["base-uri"] == ["'self'"] and policy["form-action"] == ["'self'"]
    # Style attributes only (ECharts tooltips, the heat map's cell colours); <style> elements need the nonce.
    assert policy["style-src-attr"] == ["'unsafe-inline'"]
    assert "'unsafe-inline'" not in policy["style-src"]


def test_each_response_gets_a_fresh_nonce(member_client):
    first = _nonce(_policy(member_client.get("/analytics/leaderboard/")), "style-src")
    second = _nonce(_policy(member_client.get("/analytics/leaderboard/")), "style-src")
    assert first and second and first != second


def test_the_swagger_ui_inline_script_and_style_carry_the_nonce(member_client):
    response = member_client.get("/api/docs/")
    assert response.status_code == 200
    parser = _InlineCode()
    parser.feed(response.content.decode())
    assert {kind for kind, _ in parser.inline} == {"script", "style"}  # the page still has its init script
    _assert_strict(response)


def test_no_template_has_an_inline_event_handler_or_a_script_without_a_nonce():
    """Templates no test renders are checked too: every inline <script> or <style> names the request's nonce."""
    problems = []
    for template in sorted((ROOT / "templates").rglob("*.html")):
        if template.parts[-2] == "reports":  # PDF reports: rendered to PDF by WeasyPrint, never served as HTML
            continue
        text = template.read_text()
        for match in re.finditer(r"<(script|style)\b([^>]*)>", text):
            tag, attrs = match.groups()
            if tag == "script" and ("src=" in attrs or "application/json" in attrs):
                continue
            if "nonce=" not in attrs:
                problems.append(f"{template.relative_to(ROOT)}: <{tag}{attrs}> without a nonce")
        for match in re.finditer(r"\s(on[a-z]+|hx-on[:\w-]*)=", text):
            problems.append(f"{template.relative_to(ROOT)}: inline handler {match.group(1)}=")
    assert not problems, problems


def _settings_in_subprocess(env: dict[str, str], expression: str) -> str:
    """`expression` evaluated against the settings module imported fresh with `env` (it reads the environment once)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CSP_") and k != "API_DOCS_PUBLIC"}
    code = f"import llmbench.settings as settings; print({expression})"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "llmbench.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_policy_is_enforced_by_default_and_report_only_when_asked():
    expression = "bool(settings.CONTENT_SECURITY_POLICY), bool(settings.CONTENT_SECURITY_POLICY_REPORT_ONLY)"
    assert _settings_in_subprocess({}, expression) == "True False"
    assert _settings_in_subprocess({"CSP_REPORT_ONLY": "true"}, expression) == "False True"


def test_a_report_uri_is_added_when_set():
    expression = "settings.CONTENT_SECURITY_POLICY['DIRECTIVES'].get('report-uri')"
    assert _settings_in_subprocess({"CSP_REPORT_URI": "https://csp.example.com/r"}, expression) == (
        "https://csp.example.com/r"
    )
    assert _settings_in_subprocess({}, expression) == "None"


def test_a_malformed_report_only_value_fails_loudly():
    code = "import llmbench.settings"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "llmbench.settings", "CSP_REPORT_ONLY": "perhaps"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "CSP_REPORT_ONLY" in result.stderr


def test_report_only_mode_sends_the_report_only_header_instead(client, settings):
    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = settings.CONTENT_SECURITY_POLICY
    settings.CONTENT_SECURITY_POLICY = None
    response = client.get("/login/")
    assert HEADER not in response
    assert _policy(response, HEADER_REPORT_ONLY)["script-src"][0] == "'self'"


# --- /api/schema/ and /api/docs/: logged in, unless API_DOCS_PUBLIC -------------------------------


def test_anonymous_visitors_get_401_from_the_schema(anon_api):
    response = anon_api.get("/api/schema/", {"format": "json"})
    assert response.status_code == 401
    assert "paths" not in response.json()


def test_anonymous_visitors_are_sent_to_the_login_page_from_the_docs(client):
    response = client.get("/api/docs/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/api/docs/"


def test_a_logged_in_viewer_reads_the_schema_and_the_docs(viewer_client):
    assert viewer_client.get("/api/schema/", {"format": "json"}).status_code == 200
    assert viewer_client.get("/api/docs/").status_code == 200


def test_a_user_in_no_team_may_read_the_docs(client):
    """The schema describes the API, not a team's data: any signed-in user may read it."""
    from tests.factories import UserFactory

    client.force_login(UserFactory())
    assert client.get("/api/schema/", {"format": "json"}).status_code == 200


def test_an_api_token_reads_the_schema(viewer, team):
    response = api_client_for(viewer, team).get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    assert "/api/v1/me" in response.json()["paths"]


def test_a_bad_token_gets_401_from_the_schema(anon_api):
    anon_api.credentials(HTTP_AUTHORIZATION="Token llmb_not-a-real-key")
    response = anon_api.get("/api/schema/", {"format": "json"})
    assert response.status_code == 401
    assert "token" in response.json()["detail"].lower()


def test_api_docs_public_opens_the_schema_and_docs_to_anonymous_visitors(client, settings):
    settings.API_DOCS_PUBLIC = True
    assert client.get("/api/schema/", {"format": "json"}).status_code == 200
    assert client.get("/api/docs/").status_code == 200


def test_api_docs_public_is_read_from_the_environment():
    assert _settings_in_subprocess({}, "settings.API_DOCS_PUBLIC") == "False"
    assert _settings_in_subprocess({"API_DOCS_PUBLIC": "true"}, "settings.API_DOCS_PUBLIC") == "True"


# --- check --deploy ------------------------------------------------------------------------------


def test_the_deploy_check_warns_when_metrics_token_is_unset(settings):
    from llmbench import checks

    settings.METRICS_TOKEN = ""
    found = checks.check_metrics_token(app_configs=None)
    assert [w.id for w in found] == ["llmbench.W001"]
    assert "/metrics" in found[0].msg


def test_the_deploy_check_is_quiet_when_metrics_token_is_set(settings):
    from llmbench import checks

    settings.METRICS_TOKEN = "s3cret"
    assert checks.check_metrics_token(app_configs=None) == []


def test_check_deploy_reports_w001_and_plain_check_does_not(settings):
    settings.METRICS_TOKEN = ""
    with pytest.raises(SystemCheckError, match=r"llmbench\.W001"):
        call_command("check", "--deploy", "--fail-level", "WARNING")
    call_command("check", "--fail-level", "WARNING")  # not a deploy run: development stays quiet


def test_the_deploy_check_warns_when_the_policy_only_reports(settings):
    from llmbench import checks

    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = settings.CONTENT_SECURITY_POLICY
    settings.CONTENT_SECURITY_POLICY = None
    assert [w.id for w in checks.check_csp_enforced(app_configs=None)] == ["llmbench.W002"]
