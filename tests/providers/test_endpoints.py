"""Provider endpoints: keys encrypted and write-only, base URL rules, pages and API by role."""

import io

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
