"""The admin is open to team admins, scoped to their active team; members are kept out."""

import pytest

from apps.scores.models import ModelVariant
from tests.factories import ModelVariantFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def variants(team, other_team):
    return ModelVariantFactory(team=team, model_name="org/ours"), ModelVariantFactory(
        team=other_team, model_name="org/theirs"
    )


def test_a_team_admin_sees_only_the_teams_rows(admin_client_team, variants):
    response = admin_client_team.get("/admin/scores/modelvariant/")
    assert response.status_code == 200
    assert b"org/ours" in response.content and b"org/theirs" not in response.content


def test_a_team_admin_cannot_open_another_teams_row(admin_client_team, variants):
    response = admin_client_team.get(f"/admin/scores/modelvariant/{variants[1].pk}/change/")
    assert response.status_code == 302  # the admin's "does not exist" redirect
    assert b"org/theirs" not in admin_client_team.get(response["Location"]).content


def test_a_team_admin_adds_rows_into_the_active_team(admin_client_team, team):
    response = admin_client_team.post(
        "/admin/scores/modelvariant/add/", {"model_name": "org/new", "quantization": "awq", "family": "", "notes": ""}
    )
    assert response.status_code == 302
    assert ModelVariant.objects.get(model_name="org/new").team == team


def test_the_team_field_is_hidden_from_team_admins(admin_client_team):
    form = admin_client_team.get("/admin/scores/modelvariant/add/").context["adminform"].form
    assert "team" not in form.fields


def test_members_are_refused_without_a_redirect_loop(member_client):
    response = member_client.get("/admin/", follow=True)
    assert response.status_code == 403 and b"admins of the active team" in response.content
    assert len(response.redirect_chain) == 1


def test_anonymous_users_are_sent_to_the_site_login(client):
    response = client.get("/admin/scores/modelvariant/", follow=True)
    assert response.redirect_chain[-1][0] == "/login/?next=%2Fadmin%2Fscores%2Fmodelvariant%2F"
    assert b"Log in" in response.content


def test_a_superuser_sees_every_team(client, variants):
    client.force_login(UserFactory(is_superuser=True, is_staff=True))
    content = client.get("/admin/scores/modelvariant/").content
    assert b"org/ours" in content and b"org/theirs" in content


def test_a_team_admin_manages_memberships_of_the_team_only(admin_client_team, outsider):
    content = admin_client_team.get("/admin/accounts/membership/").content
    assert outsider.username.encode() not in content


def test_foreign_key_choices_are_limited_to_the_team(admin_client_team, team, other_team):
    from tests.factories import BenchmarkFactory

    BenchmarkFactory(team=team, name="OursBench")
    BenchmarkFactory(team=other_team, name="TheirBench")
    form = admin_client_team.get("/admin/scores/score/add/").context["adminform"].form
    assert [b.name for b in form.fields["benchmark"].queryset] == ["OursBench"]


def test_workload_versions_and_datasets_are_team_scoped_and_never_show_stored_bytes(
    admin_client_team, team, other_team
):
    from apps.workloads.services import dataset_upload, workload_create
    from tests.workloads.files import jsonl

    spec = {"source": "synthetic", "input_tokens": {"dist": "fixed", "value": 10},
            "output_tokens": {"dist": "fixed", "value": 5}}  # fmt: skip
    ours = workload_create(team=team, user=None, name="ours-wl", spec=spec)
    theirs = workload_create(team=other_team, user=None, name="theirs-wl", spec=spec)
    dataset = dataset_upload(
        team=team, user=None, name="ours-ds", content=jsonl([{"prompt": "Hello there"}]), filename="p.jsonl"
    )
    listing = admin_client_team.get("/admin/workloads/workloadversion/").content
    assert b"ours-wl" in listing and b"theirs-wl" not in listing
    theirs_page = admin_client_team.get(f"/admin/workloads/workloadversion/{theirs.latest.pk}/change/")
    assert theirs_page.status_code == 302
    assert admin_client_team.get(f"/admin/workloads/workload/{ours.pk}/change/").status_code == 200
    page = admin_client_team.get(f"/admin/workloads/workloaddataset/{dataset.pk}/change/")
    assert page.status_code == 200 and "payload" not in page.context["adminform"].form.fields
