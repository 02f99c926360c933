"""An endpoint's server and GPU metrics URLs: set and cleared on the page and through the API, refused with the
reason on the field like a base URL, and only by team admins."""

import pytest
from django.urls import reverse

from apps.providers.models import ProviderEndpoint

pytestmark = pytest.mark.django_db

URL = "/api/v1/providers/endpoints"
FORM = {"name": "lab", "kind": "openai_compatible", "base_url": "http://10.0.0.5:8000/v1", "connect_timeout_s": 5,
        "read_timeout_s": 30, "total_timeout_s": 60}  # fmt: skip
ENGINE, GPU = "http://10.0.0.5:8000/metrics", "http://10.0.0.5:9400/metrics"
BAD = [
    ("http://169.254.169.254/metrics", "Cloud metadata"),
    ("ftp://10.0.0.5/metrics", "http:// or https://"),
    ("10.0.0.5:9400/metrics", "http:// or https://"),
    ("http://[10.0.0.5/metrics", "Not a usable URL"),
    ("http://10.0.0.5:99999/metrics", "Not a usable URL"),
]


def endpoint(team, **fields) -> ProviderEndpoint:
    return ProviderEndpoint.objects.create(
        team=team, name=fields.pop("name", "vllm"), kind="openai_compatible", base_url="http://10.0.0.5:8000/v1",
        **fields,
    )  # fmt: skip


class TestPage:
    def test_an_admin_sets_both_urls_and_can_clear_them(self, admin_client_team, team):
        response = admin_client_team.post(
            reverse("providers:new"), {**FORM, "metrics_url": ENGINE, "gpu_metrics_url": GPU}
        )
        assert response.status_code == 302
        saved = ProviderEndpoint.objects.get(team=team, name="lab")
        assert (saved.metrics_url, saved.gpu_metrics_url) == (ENGINE, GPU)
        form_page = admin_client_team.get(reverse("providers:edit", args=[saved.pk])).content.decode()
        assert "Server metrics URL (optional)" in form_page and "GPU metrics URL (optional)" in form_page
        assert f'value="{GPU}"' in form_page and "reads them once a second" in form_page
        body = {**FORM, "metrics_url": "", "gpu_metrics_url": ""}
        assert admin_client_team.post(reverse("providers:edit", args=[saved.pk]), body).status_code == 302
        saved.refresh_from_db()
        assert (saved.metrics_url, saved.gpu_metrics_url) == ("", "")

    @pytest.mark.parametrize("field_name", ["metrics_url", "gpu_metrics_url"])
    @pytest.mark.parametrize(("url", "words"), BAD)
    def test_a_refused_url_is_400_naming_the_field(self, admin_client_team, team, field_name, url, words):
        response = admin_client_team.post(reverse("providers:new"), {**FORM, field_name: url})
        assert response.status_code == 400 and words in str(response.context["form"].errors[field_name])
        assert not ProviderEndpoint.objects.filter(team=team).exists()

    def test_the_allow_list_applies(self, admin_client_team, settings):
        settings.PROVIDER_URL_ALLOWLIST = ["10.0.0.0/8"]
        response = admin_client_team.post(reverse("providers:new"), {**FORM, "gpu_metrics_url": "http://192.168.1.9/m"})
        assert response.status_code == 400 and "allow list" in str(response.context["form"].errors["gpu_metrics_url"])

    def test_a_member_cannot_set_them(self, member_client, team):
        mine = endpoint(team)
        assert (
            member_client.post(reverse("providers:edit", args=[mine.pk]), {**FORM, "metrics_url": ENGINE}).status_code
            == 403
        )
        mine.refresh_from_db()
        assert mine.metrics_url == ""

    def test_another_teams_endpoint_is_404(self, admin_client_team, other_team):
        theirs = endpoint(other_team)
        body = {**FORM, "metrics_url": ENGINE}
        assert admin_client_team.post(reverse("providers:edit", args=[theirs.pk]), body).status_code == 404


class TestApi:
    def test_an_admin_sets_them_and_everyone_reads_them(self, admin_api, viewer_api, team):
        created = admin_api.post(URL, {**FORM, "name": "api", "metrics_url": ENGINE}, format="json")
        assert created.status_code == 201, created.json()
        assert created.json()["metrics_url"] == ENGINE and created.json()["gpu_metrics_url"] == ""
        pk = created.json()["id"]
        patched = admin_api.patch(f"{URL}/{pk}", {"gpu_metrics_url": f" {GPU} "}, format="json")
        assert patched.status_code == 200 and patched.json()["gpu_metrics_url"] == GPU
        assert viewer_api.get(f"{URL}/{pk}").json()["gpu_metrics_url"] == GPU

    @pytest.mark.parametrize("field_name", ["metrics_url", "gpu_metrics_url"])
    @pytest.mark.parametrize(("url", "words"), BAD)
    def test_a_refused_url_is_400_naming_the_field(self, admin_api, team, field_name, url, words):
        mine = endpoint(team)
        response = admin_api.patch(f"{URL}/{mine.pk}", {field_name: url}, format="json")
        assert response.status_code == 400 and words in str(response.json()[field_name])
        mine.refresh_from_db()
        assert getattr(mine, field_name) == ""

    def test_roles_and_teams(self, member_api, anon_api, admin_api, team, other_team):
        mine, theirs = endpoint(team), endpoint(other_team)
        assert member_api.patch(f"{URL}/{mine.pk}", {"metrics_url": ENGINE}, format="json").status_code == 403
        assert anon_api.patch(f"{URL}/{mine.pk}", {"metrics_url": ENGINE}, format="json").status_code == 401
        assert admin_api.patch(f"{URL}/{theirs.pk}", {"metrics_url": ENGINE}, format="json").status_code == 404
        mine.refresh_from_db()
        assert mine.metrics_url == ""

    def test_an_unparseable_base_url_is_a_400_too_not_a_500(self, admin_api):
        response = admin_api.post(URL, {**FORM, "base_url": "http://[10.0.0.5/v1"}, format="json")
        assert response.status_code == 400 and "Not a usable URL" in str(response.json()["base_url"])
