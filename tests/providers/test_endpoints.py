"""Provider endpoints: keys encrypted and write-only, base URL rules, pages and API by role."""

import io
import re

import pytest
from django.urls import reverse

from apps.providers.models import ProviderEndpoint
from apps.providers.urlcheck import UrlRefused, check_base_url
from llmbench import crypto

pytestmark = pytest.mark.django_db
CANARY = "sk-canary-0123456789abcdef"


def make_endpoint(team, **fields) -> ProviderEndpoint:
    endpoint = ProviderEndpoint(team=team, name=fields.pop("name", "vllm"), kind=fields.pop("kind", "openai_compatible"),
                                base_url=fields.pop("base_url", "http://127.0.0.1:8001/v1"), **fields)  # fmt: skip
    endpoint.set_api_key(CANARY)
    endpoint.save()
    return endpoint


class TestSecrets:
    def test_the_key_is_stored_encrypted_and_only_its_last_4_are_readable(self, team):
        endpoint = make_endpoint(team)
        row = ProviderEndpoint.objects.filter(pk=endpoint.pk).values().get()
        assert CANARY not in str(row) and row["api_key_last4"] == "cdef"
        assert endpoint.config().api_key == CANARY
        assert CANARY not in repr(endpoint.config())

    def test_rotation_re_encrypts_under_the_new_primary_key(self, team, settings):
        from cryptography.fernet import Fernet
        from django.core.management import call_command

        old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
        settings.LLMBENCH_ENCRYPTION_KEYS = [old]
        crypto.reset_cache()
        endpoint = make_endpoint(team)
        settings.LLMBENCH_ENCRYPTION_KEYS = [new, old]
        crypto.reset_cache()
        out = io.StringIO()
        call_command("rotate_keys", stdout=out)
        assert "Re-encrypted 1 key(s)" in out.getvalue()
        settings.LLMBENCH_ENCRYPTION_KEYS = [new]
        crypto.reset_cache()
        endpoint.refresh_from_db()
        assert endpoint.config().api_key == CANARY
        crypto.reset_cache()

    def test_a_key_under_an_unknown_key_list_fails_clearly(self, team, settings):
        from cryptography.fernet import Fernet

        endpoint = make_endpoint(team)
        settings.LLMBENCH_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
        crypto.reset_cache()
        with pytest.raises(crypto.DecryptionFailed):
            endpoint.config()
        crypto.reset_cache()


class TestBaseUrls:
    @pytest.mark.parametrize("url", ["http://127.0.0.1:8000/v1", "http://10.1.2.3/v1", "https://api.openai.com/v1"])
    def test_private_loopback_and_public_hosts_are_allowed(self, url):
        check_base_url(url, resolve=False)

    @pytest.mark.parametrize(
        "url",
        ["http://169.254.169.254/latest", "http://[fd00:ec2::254]/", "http://[::ffff:169.254.169.254]/", "ftp://x/"],
    )
    def test_metadata_addresses_and_other_schemes_are_refused(self, url):
        with pytest.raises(UrlRefused):
            check_base_url(url, resolve=False)

    def test_allow_and_deny_lists(self, settings):
        settings.PROVIDER_URL_DENYLIST = ["10.0.0.0/8"]
        with pytest.raises(UrlRefused, match="deny list"):
            check_base_url("http://10.1.2.3/v1", resolve=False)
        settings.PROVIDER_URL_DENYLIST, settings.PROVIDER_URL_ALLOWLIST = [], ["127.0.0.1"]
        check_base_url("http://127.0.0.1/v1", resolve=False)
        with pytest.raises(UrlRefused, match="allow list"):
            check_base_url("http://10.1.2.3/v1", resolve=False)


class TestPages:
    def test_everyone_sees_the_list_without_keys(self, viewer_client, team):
        make_endpoint(team)
        content = viewer_client.get(reverse("providers:list")).content
        assert b"vllm" in content and b"cdef" in content and CANARY.encode() not in content

    def test_an_admin_creates_an_endpoint_with_a_write_only_key(self, admin_client_team, team):
        body = {"name": "lab", "kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1", "api_key": CANARY,
                "model_names": "m1, m2", "connect_timeout_s": 5, "read_timeout_s": 30, "total_timeout_s": 60}  # fmt: skip
        response = admin_client_team.post(reverse("providers:new"), body)
        assert response.status_code == 302
        endpoint = ProviderEndpoint.objects.get(team=team, name="lab")
        assert endpoint.model_names == ["m1", "m2"] and endpoint.config().api_key == CANARY
        form_page = admin_client_team.get(reverse("providers:edit", args=[endpoint.pk])).content
        assert CANARY.encode() not in form_page and b"cdef" in form_page

    def test_saving_without_a_key_keeps_the_stored_one(self, admin_client_team, team):
        endpoint = make_endpoint(team)
        body = {"name": "renamed", "kind": "openai_compatible", "base_url": endpoint.base_url, "api_key": "",
                "connect_timeout_s": 5, "read_timeout_s": 30, "total_timeout_s": 60}  # fmt: skip
        assert admin_client_team.post(reverse("providers:edit", args=[endpoint.pk]), body).status_code == 302
        endpoint.refresh_from_db()
        assert endpoint.name == "renamed" and endpoint.config().api_key == CANARY

    def test_a_metadata_url_is_400_naming_the_field(self, admin_client_team):
        body = {"name": "x", "kind": "openai", "base_url": "http://169.254.169.254/v1", "connect_timeout_s": 5,
                "read_timeout_s": 30, "total_timeout_s": 60}  # fmt: skip
        response = admin_client_team.post(reverse("providers:new"), body)
        assert response.status_code == 400 and "base_url" in response.context["form"].errors

    def test_a_malformed_url_is_400_naming_the_field_not_a_500(self, admin_client_team):
        body = {"name": "x", "kind": "openai_compatible", "base_url": "http://[bad/v1", "connect_timeout_s": 5,
                "read_timeout_s": 30, "total_timeout_s": 60}  # fmt: skip
        response = admin_client_team.post(reverse("providers:new"), body)
        assert response.status_code == 400 and "not a valid URL" in str(response.context["form"].errors["base_url"])

    def test_members_cannot_manage_endpoints(self, member_client, team):
        endpoint = make_endpoint(team)
        assert member_client.post(reverse("providers:new"), {"name": "x"}).status_code == 403
        assert member_client.post(reverse("providers:delete", args=[endpoint.pk])).status_code == 403
        assert member_client.post(reverse("providers:test", args=[endpoint.pk])).status_code == 403

    def test_another_teams_endpoint_is_404(self, admin_client_team, other_team):
        endpoint = make_endpoint(other_team)
        assert admin_client_team.get(reverse("providers:edit", args=[endpoint.pk])).status_code == 404
        assert admin_client_team.post(reverse("providers:delete", args=[endpoint.pk])).status_code == 404

    def test_anonymous_is_redirected(self, client):
        assert client.get(reverse("providers:list")).status_code == 302


class TestApi:
    URL = "/api/v1/providers/endpoints"

    def test_the_key_is_write_only(self, admin_api, team):
        body = {"name": "api", "kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1", "api_key": CANARY}
        response = admin_api.post(self.URL, body, format="json")
        assert response.status_code == 201, response.json()
        assert CANARY not in response.content.decode() and response.json()["key_hint"] == "…cdef"
        listing = admin_api.get(self.URL).content.decode()
        assert CANARY not in listing and "cdef" in listing

    def test_prices_default_from_the_table(self, admin_api):
        body = {"name": "oa", "kind": "openai", "base_url": "https://api.openai.com/v1", "model_names": ["gpt-4o-mini"]}
        response = admin_api.post(self.URL, body, format="json")
        assert (response.json()["price_input_per_1m_usd"], response.json()["price_output_per_1m_usd"]) == (0.15, 0.6)

    def test_members_read_but_cannot_write(self, member_api, team):
        make_endpoint(team)
        assert member_api.get(self.URL).status_code == 200
        assert member_api.post(self.URL, {"name": "x", "kind": "sim"}, format="json").status_code == 403

    def test_bad_input_names_the_field(self, admin_api):
        response = admin_api.post(
            self.URL, {"name": "x", "kind": "openai", "base_url": "http://169.254.169.254/"}, format="json"
        )
        assert response.status_code == 400 and "base_url" in response.json()
        assert admin_api.post(self.URL, {"name": "x", "kind": "nope"}, format="json").status_code == 400

    def test_another_teams_endpoint_is_404(self, admin_api, other_team):
        endpoint = make_endpoint(other_team)
        assert admin_api.get(f"{self.URL}/{endpoint.pk}").status_code == 404
        assert admin_api.delete(f"{self.URL}/{endpoint.pk}").status_code == 404

    def test_anonymous_is_401(self, anon_api, db):
        assert anon_api.get(self.URL).status_code == 401


class TestConnection:
    def test_a_sim_endpoint_lists_its_models(self, admin_api, team):
        endpoint = ProviderEndpoint.objects.create(team=team, name="sim", kind="sim")
        response = admin_api.post(f"/api/v1/providers/endpoints/{endpoint.pk}/test")
        assert response.status_code == 200 and response.json()["ok"] is True
        endpoint.refresh_from_db()
        assert endpoint.last_test_ok and "sim-small" in endpoint.model_names

    def test_a_refused_key_is_reported_without_the_key(self, admin_client_team, team):
        from tests.providers.servers import Script, mock_server  # noqa: F401

        endpoint = make_endpoint(team, base_url="http://127.0.0.1:9/v1")  # nothing listens on port 9
        response = admin_client_team.post(reverse("providers:test", args=[endpoint.pk]), follow=True)
        endpoint.refresh_from_db()
        assert endpoint.last_test_ok is False and CANARY not in endpoint.last_test_message
        assert CANARY.encode() not in response.content

    def test_members_cannot_test(self, member_api, team):
        endpoint = ProviderEndpoint.objects.create(team=team, name="sim", kind="sim")
        assert member_api.post(f"/api/v1/providers/endpoints/{endpoint.pk}/test").status_code == 403


@pytest.fixture
def llm_server():
    """tests/providers/servers.py's mock vendor server, in a thread (the views are synchronous)."""
    from tests.providers.servers import MockLLMServer
    from tests.threaded import running_in_thread

    async def start():
        return await MockLLMServer().start()

    async def stop(server):
        await server.close()

    with running_in_thread(start, stop) as server:
        yield server


def header_texts(html: str, table_id: str) -> list[str]:
    table = html[html.index(f'id="{table_id}"') :]
    head = table[: table.index("</thead>")]
    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<th[^>]*>(.*?)</th>", head)]


class TestPageText:
    def test_a_new_endpoints_model_field_starts_empty(self, admin_client_team):
        """The model names field of a new endpoint is empty, not the list's repr "[]"."""
        html = admin_client_team.get(reverse("providers:new")).content.decode()
        field = re.search(r'<input[^>]*name="model_names"[^>]*>', html).group(0)
        assert "[]" not in field and 'value="' not in field

    def test_an_existing_endpoints_models_are_comma_separated(self, admin_client_team, team):
        """An endpoint's models are shown as the comma-separated text the field takes."""
        endpoint = make_endpoint(team, model_names=["m1", "m2"])
        html = admin_client_team.get(reverse("providers:edit", args=[endpoint.pk])).content.decode()
        assert 'name="model_names" value="m1, m2"' in html

    def test_labels_and_kinds_are_words(self, admin_client_team):
        """The form speaks words: "Base URL", "API key", "OpenAI-compatible", not field names or codes."""
        html = admin_client_team.get(reverse("providers:new")).content.decode()
        assert "Base URL" in html and "API key" in html and "Input price (USD per 1M tokens)" in html
        assert ">OpenAI-compatible (vLLM, SGLang, TGI …)</option>" in html and ">Simulator (offline)</option>" in html
        assert "Price input per 1m usd" not in html and "Api key" not in html


class TestConnectionMessages:
    def test_a_refused_key_shows_the_providers_message_on_the_page(self, admin_client_team, team, llm_server):
        """A failed test says what failed in words and the provider's own message, on the page."""
        from tests.providers.servers import Script

        llm_server.script = Script(status=401, error_message="Incorrect API key provided")
        endpoint = make_endpoint(team, base_url=llm_server.base_url("openai_compatible"))
        html = admin_client_team.post(reverse("providers:test", args=[endpoint.pk]), follow=True).content.decode()
        message = re.search(r'<li class="message error">(.*?)</li>', html, re.S).group(1)
        assert "The API key was refused" in message and "Incorrect API key provided" in message
        assert "AdapterError" not in html
        cell = re.search(r'<td class="last-test"[^>]*>(.*?)</td>', html, re.S).group(1)
        assert "Failed" in cell and "HTTP 401: Incorrect API key provided" in cell

    def test_an_unreachable_server_says_it_could_not_connect(self, admin_client_team, team):
        """Nothing listening: "Could not connect" with the connection error, in full on the list."""
        endpoint = make_endpoint(team, base_url="http://127.0.0.1:9/v1")
        admin_client_team.post(reverse("providers:test", args=[endpoint.pk]))
        endpoint.refresh_from_db()
        assert endpoint.last_test_message.startswith("Could not connect: ")
        assert "127.0.0.1:9" in endpoint.last_test_message
        html = admin_client_team.get(reverse("providers:list")).content.decode()
        assert endpoint.last_test_message.replace("'", "&#x27;") in html

    def test_a_failure_without_a_message_still_says_what_failed(self):
        """An empty or code-only provider message still gives a sentence; an unexpected error its type."""
        from apps.providers.engine.adapters import AdapterError
        from apps.providers.engine.types import ErrorKind, RequestError
        from apps.providers.services import failure_message

        assert failure_message(AdapterError(RequestError(ErrorKind.SERVER, ""))) == "Server error."
        assert failure_message(AdapterError(RequestError(ErrorKind.TIMEOUT, "timeout"))) == "Timed out."
        shape = AdapterError(RequestError(ErrorKind.PROTOCOL, "unexpected model list shape"))
        assert failure_message(shape) == "Unexpected answer: unexpected model list shape"
        assert failure_message(RuntimeError()) == "Failed with RuntimeError."

    def test_a_working_endpoint_says_connected(self, admin_client_team, team, llm_server):
        """A passing test shows "Connected" and the models it found."""
        endpoint = make_endpoint(team, base_url=llm_server.base_url("openai_compatible"))
        html = admin_client_team.post(reverse("providers:test", args=[endpoint.pk]), follow=True).content.decode()
        cell = re.search(r'<td class="last-test"[^>]*>(.*?)</td>', html, re.S).group(1)
        assert "Connected" in cell and "gpt-test" in cell


class TestEndpointTable:
    def test_last_test_and_test_connection_come_first_in_a_sticky_table(self, admin_client_team, team):
        """Name, Last test and Test connection lead the table; it has a sticky first column, and the
        secondary columns collapse behind the columns toggle."""
        make_endpoint(team)
        html = admin_client_team.get(reverse("providers:list")).content.decode()
        assert header_texts(html, "endpoints-table")[:4] == ["Name", "Last test", "Test connection", "Kind"]
        assert '<div class="table-wrap sticky-first"><table id="endpoints-table">' in html
        assert html.index('class="columns-toggle"') < html.index('id="endpoints-table"')
        for secondary in ("Base URL", "Key", "Limits", "Price in / out per 1M tokens"):
            assert f'<th class="secondary">{secondary}</th>' in html
        assert "OpenAI-compatible" in html and "never tested" in html

    def test_viewers_get_no_test_connection_column(self, viewer_client, team):
        """Only team admins can test a connection, so only they see the column."""
        make_endpoint(team)
        html = viewer_client.get(reverse("providers:list")).content.decode()
        assert header_texts(html, "endpoints-table")[:3] == ["Name", "Last test", "Kind"]
        assert "Test connection" not in html

    def test_a_simulated_endpoint_is_marked(self, viewer_client, team):
        """The simulator's row carries the shared "simulated" badge and row mark."""
        ProviderEndpoint.objects.create(team=team, name="sim", kind="sim")
        html = viewer_client.get(reverse("providers:list")).content.decode()
        assert '<tr class="simulated">' in html and 'class="badge simulated"' in html


class TestSimulatorSettings:
    BODY = {"name": "lab sim", "kind": "sim", "connect_timeout_s": 5, "read_timeout_s": 30, "total_timeout_s": 60}

    def test_the_form_takes_a_sim_url_with_a_capacity(self, admin_client_team, team):
        """A simulator's capacity is set in its base URL from the form, and its adapter uses it."""
        from apps.providers.engine.adapters import adapter_for

        body = {**self.BODY, "base_url": "sim://lab?max_batch=4&tokens_per_s=200"}
        assert admin_client_team.post(reverse("providers:new"), body).status_code == 302
        adapter = adapter_for(ProviderEndpoint.objects.get(team=team, name="lab sim").config())
        assert (adapter.profile.max_batch, adapter.profile.tokens_per_s) == (4, 200.0)
        assert adapter.server.max_batch == 4

    @pytest.mark.parametrize(
        ("url", "words"),
        [("sim://lab?max_batch=many", "must be a number"), ("sim://lab?batch=4", "unknown sim parameter"),
         ("http://10.0.0.5/v1", "starts with sim://"), ("sim://lab?tokens_per_s=-1", "0 or more")],
    )  # fmt: skip
    def test_a_bad_sim_url_is_400_naming_the_field(self, admin_client_team, admin_api, url, words):
        """A typo in a simulator URL is refused with the reason, on the page and in the API."""
        response = admin_client_team.post(reverse("providers:new"), {**self.BODY, "base_url": url})
        assert response.status_code == 400 and words in str(response.context["form"].errors["base_url"])
        api = admin_api.post(
            "/api/v1/providers/endpoints", {"name": "x", "kind": "sim", "base_url": url}, format="json"
        )
        assert api.status_code == 400 and words in str(api.json()["base_url"])

    def test_an_http_endpoint_still_needs_an_http_url(self, admin_client_team):
        """Other kinds keep refusing what is not an http(s) URL, naming the field."""
        body = {**self.BODY, "kind": "openai_compatible", "base_url": "sim://lab"}
        response = admin_client_team.post(reverse("providers:new"), body)
        assert response.status_code == 400 and "http" in str(response.context["form"].errors["base_url"])
