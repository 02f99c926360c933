"""Which catalog variant an endpoint serves under each model name (/scores/served/<endpoint>/): set by members,
read by viewers, reached from the endpoint list and right after an endpoint is saved with model names."""

import pytest
from django.urls import reverse

from apps.providers.models import ProviderEndpoint
from apps.scores.models import ServedVariant
from tests.factories import ModelVariantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def endpoint(team):
    return ProviderEndpoint.objects.create(team=team, name="vllm-a", kind="sim", base_url="sim://local",
                                           model_names=["llama-8b", "llama-8b-awq"])  # fmt: skip


@pytest.fixture
def variants(team):
    return (ModelVariantFactory(team=team, model_name="meta/llama-8b", quantization="BF16"),
            ModelVariantFactory(team=team, model_name="meta/llama-8b", quantization="AWQ"))  # fmt: skip


def test_a_member_links_each_model_name_and_unlinks_one(member_client, team, endpoint, variants):
    bf16, awq = variants
    url = reverse("scores:served", args=[endpoint.pk])
    response = member_client.post(url, {"variant-0": bf16.pk, "variant-1": awq.pk})
    assert response.status_code == 302 and response["Location"] == url
    assert dict(ServedVariant.objects.filter(endpoint=endpoint).values_list("model", "variant")) == {
        "llama-8b": bf16.pk, "llama-8b-awq": awq.pk}  # fmt: skip
    page = member_client.get(url).content.decode()
    assert f'<option value="{awq.pk}" selected>' in page
    member_client.post(url, {"variant-0": bf16.pk, "variant-1": ""})
    assert list(ServedVariant.objects.filter(endpoint=endpoint).values_list("model", flat=True)) == ["llama-8b"]


def test_anonymous_is_sent_to_login(client, endpoint):
    response = client.get(reverse("scores:served", args=[endpoint.pk]))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_a_viewer_reads_but_cannot_change(viewer_client, endpoint, variants):
    url = reverse("scores:served", args=[endpoint.pk])
    page = viewer_client.get(url)
    assert page.status_code == 200 and "llama-8b-awq" in page.content.decode() and "disabled" in page.content.decode()
    assert viewer_client.post(url, {"variant-0": variants[0].pk}).status_code == 403
    assert not ServedVariant.objects.exists()


def test_another_teams_endpoint_is_404_and_its_variants_cannot_be_chosen(member_client, other_team, endpoint, variants):
    theirs = ProviderEndpoint.objects.create(team=other_team, name="theirs", kind="sim", base_url="sim://x",
                                             model_names=["m"])  # fmt: skip
    assert member_client.get(reverse("scores:served", args=[theirs.pk])).status_code == 404
    their_variant = ModelVariantFactory(team=other_team, model_name="x", quantization="FP8")
    response = member_client.post(reverse("scores:served", args=[endpoint.pk]), {"variant-0": their_variant.pk})
    assert response.status_code == 400
    assert "Model llama-8b: choose one of the team&#x27;s catalog variants." in response.content.decode()
    assert not ServedVariant.objects.exists()


def test_bad_input_names_the_model_and_stores_nothing(member_client, endpoint, variants):
    response = member_client.post(reverse("scores:served", args=[endpoint.pk]),
                                  {"variant-0": variants[0].pk, "variant-1": "not-a-number"})  # fmt: skip
    assert response.status_code == 400 and "Model llama-8b-awq" in response.content.decode()
    assert not ServedVariant.objects.exists()  # the valid row is not half-saved either


def test_saving_an_endpoint_with_model_names_leads_to_its_variants(admin_client_team, team):
    body = {"name": "lab", "kind": "sim", "base_url": "sim://lab", "model_names": "llama-8b",
            "connect_timeout_s": 5, "read_timeout_s": 30, "total_timeout_s": 60}  # fmt: skip
    response = admin_client_team.post(reverse("providers:new"), body)
    endpoint = ProviderEndpoint.objects.get(team=team, name="lab")
    assert response.status_code == 302 and response["Location"] == reverse("scores:served", args=[endpoint.pk])
    assert (
        reverse("scores:served", args=[endpoint.pk])
        in admin_client_team.get(reverse("providers:list")).content.decode()
    )
