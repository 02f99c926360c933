"""Every audited action, through the page, the API and the admin where it can be done there: one entry with
who, team, through what, address, request id, object and before/after, and never a secret in it."""

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.urls import reverse

from apps.accounts.models import ApiToken, Membership
from apps.accounts.services import membership_set
from apps.experiments.models import Experiment, Suite, TestCase
from apps.experiments.services import testcase_create
from apps.providers.models import ProviderEndpoint
from llmbench import crypto
from tests.audit.helpers import assert_attributed, assert_no_secret, entries, only
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PROVIDER_KEY = "sk-live-audit-canary-9f8e7d6c5b4a"
NEW_PROVIDER_KEY = "sk-live-audit-rotated-1a2b3c4d5e6f"
PASSWORD = "pass-word-123"  # tests/factories.py


def api_key_of(api) -> str:
    return api._credentials["HTTP_AUTHORIZATION"].split()[1]


def endpoint_with_key(team, name="vllm", key=PROVIDER_KEY) -> ProviderEndpoint:
    endpoint = ProviderEndpoint(team=team, name=name, kind="sim", base_url="sim://local?zero_latency=1")
    endpoint.set_api_key(key)
    endpoint.save()
    return endpoint


def endpoint_form(**fields) -> dict:
    body = {"name": "lab", "kind": "sim", "base_url": "sim://local?zero_latency=1", "api_key": "",
            "model_names": "sim-small", "connect_timeout_s": 5, "read_timeout_s": 30, "total_timeout_s": 60}  # fmt: skip
    body.update(fields)
    return body


def secrets_of(endpoint: ProviderEndpoint, *keys: str) -> tuple[str, ...]:
    """The plain keys and the stored ciphertext: neither may be in an entry."""
    endpoint.refresh_from_db()
    return (*keys, endpoint.api_key_encrypted) if endpoint.api_key_encrypted else keys


# --- provider endpoints and keys ------------------------------------------------------------------------------------


class TestProviderEndpoints:
    def test_creating_one_on_the_page_records_it_with_the_key_as_a_hint_only(self, admin_client_team, admin_user, team):
        """provider_endpoint.created: the fields, and the key only as "(set) …<last 4>"."""
        response = admin_client_team.post(reverse("providers:new"), endpoint_form(api_key=PROVIDER_KEY))
        assert response.status_code == 302
        endpoint = ProviderEndpoint.objects.get(team=team, name="lab")
        entry = only("provider_endpoint.created")
        assert_attributed(entry, user=admin_user, team=team, via="page")
        assert (entry.object_type, entry.object_id, entry.object_repr) == ("provider_endpoint", str(endpoint.pk), "lab")
        assert entry.changes["name"] == [None, "lab"] and entry.changes["kind"] == [None, "sim"]
        assert entry.changes["api_key"] == [None, "(set) …5b4a"]
        assert_no_secret(entry, *secrets_of(endpoint, PROVIDER_KEY), PASSWORD)

    def test_a_new_key_through_the_api_is_a_key_rotation(self, admin_api, admin_user, team):
        """provider_endpoint.key_rotated: the token used is named (name and prefix), neither key nor the token's key is."""
        endpoint = endpoint_with_key(team)
        url = f"/api/v1/providers/endpoints/{endpoint.pk}"
        assert admin_api.patch(url, {"api_key": NEW_PROVIDER_KEY}, format="json").status_code == 200
        entry = only("provider_endpoint.key_rotated")
        assert_attributed(entry, user=admin_user, team=team, via="api")
        token = ApiToken.objects.get(user=admin_user, team=team)
        assert entry.actor_label == f"{admin_user.username} (API token “test”, {token.key_prefix}…)"
        assert entry.changes == {"api_key": ["(set) …5b4a", "(set) …5e6f"]}
        assert_no_secret(
            entry, *secrets_of(endpoint, PROVIDER_KEY, NEW_PROVIDER_KEY), api_key_of(admin_api), token.key_hash
        )

    def test_adding_and_removing_the_key_on_the_page(self, admin_client_team, admin_user, team):
        """provider_endpoint.key_added, then provider_endpoint.key_removed ("Remove the stored key")."""
        endpoint = ProviderEndpoint.objects.create(team=team, name="lab", kind="sim", base_url="sim://local")
        url = reverse("providers:edit", args=[endpoint.pk])
        assert admin_client_team.post(url, endpoint_form(api_key=PROVIDER_KEY)).status_code == 302
        added = only("provider_endpoint.key_added")
        assert added.changes["api_key"] == [None, "(set) …5b4a"]
        assert_attributed(added, user=admin_user, team=team, via="page")
        assert admin_client_team.post(url, endpoint_form(remove_api_key="on")).status_code == 302
        removed = only("provider_endpoint.key_removed")
        assert removed.changes["api_key"] == ["(set) …5b4a", None]
        for entry in (added, removed):
            assert_no_secret(entry, PROVIDER_KEY)

    def test_changing_settings_without_the_key_is_a_change(self, admin_api, admin_user, team):
        """provider_endpoint.changed with before/after of what changed only; keeping the key is no key event."""
        endpoint = endpoint_with_key(team)
        body = {"max_concurrency": 4, "price_input_per_1m_usd": 0.5}
        assert admin_api.patch(f"/api/v1/providers/endpoints/{endpoint.pk}", body, format="json").status_code == 200
        entry = only("provider_endpoint.changed")
        assert entry.changes == {"max_concurrency": [None, 4], "price_input_per_1m_usd": [None, 0.5]}
        assert not entries(action__startswith="provider_endpoint.key_")
        assert_no_secret(entry, *secrets_of(endpoint, PROVIDER_KEY))

    def test_a_connection_test_writes_no_entry(self, admin_client_team, team):
        """Testing the connection stores its outcome on the endpoint: bookkeeping, not a change (model names it
        fills in when there were none would be one)."""
        endpoint = endpoint_with_key(team)
        ProviderEndpoint.objects.filter(pk=endpoint.pk).update(model_names=["sim-small"])
        assert admin_client_team.post(reverse("providers:test", args=[endpoint.pk])).status_code == 302
        assert not entries(action__startswith="provider_endpoint.", action__endswith="changed")

    def test_deleting_one_on_the_page_and_through_the_api(self, admin_client_team, admin_api, admin_user, team):
        """provider_endpoint.deleted, with what it was (and the key's hint) as "before"."""
        on_page, by_api = endpoint_with_key(team, "page"), endpoint_with_key(team, "api")
        page_secrets, api_secrets = secrets_of(on_page, PROVIDER_KEY), secrets_of(by_api, PROVIDER_KEY)
        assert admin_client_team.post(reverse("providers:delete", args=[on_page.pk])).status_code == 302
        assert admin_api.delete(f"/api/v1/providers/endpoints/{by_api.pk}").status_code == 204
        page_entry, api_entry = entries(action="provider_endpoint.deleted")
        assert_attributed(page_entry, user=admin_user, team=team, via="page")
        assert_attributed(api_entry, user=admin_user, team=team, via="api")
        assert page_entry.object_repr == "page" and page_entry.changes["name"] == ["page", None]
        assert page_entry.changes["api_key"] == ["(set) …5b4a", None]
        assert_no_secret(page_entry, *page_secrets)
        assert_no_secret(api_entry, *api_secrets, api_key_of(admin_api))

    def test_re_encryption_under_a_new_encryption_key_is_told_apart_from_a_new_key(self, team, settings):
        """manage.py rotate_keys keeps the key and changes its ciphertext: provider_endpoint.key_reencrypted, by the
        system."""
        old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
        settings.LLMBENCH_ENCRYPTION_KEYS = [old]
        crypto.reset_cache()
        try:
            endpoint = endpoint_with_key(team)
            settings.LLMBENCH_ENCRYPTION_KEYS = [new, old]
            crypto.reset_cache()
            call_command("rotate_keys", stdout=io.StringIO())
            entry = only("provider_endpoint.key_reencrypted")
            assert not entries(action="provider_endpoint.key_rotated")
        finally:
            crypto.reset_cache()
        assert (entry.actor_id, entry.actor_label, entry.via, entry.ip) == (None, "system", "system", None)
        assert entry.team_id == team.pk and entry.object_id == str(endpoint.pk)
        assert entry.changes == {"api_key": ["(set) …5b4a", "(set) …5b4a"]}
        assert_no_secret(entry, *secrets_of(endpoint, PROVIDER_KEY))

    def test_a_password_in_a_url_is_not_written_down(self, team):
        """URLs are summarised without the password in them or secret-looking query values."""
        ProviderEndpoint.objects.create(
            team=team, name="proxy", kind="openai_compatible",
            base_url="http://bob:hunter2-secret@10.0.0.5:8000/v1?api_key=zzz-secret&region=eu",
        )  # fmt: skip
        entry = only("provider_endpoint.created")
        assert entry.changes["base_url"] == [None, "http://bob:(hidden)@10.0.0.5:8000/v1?api_key=(hidden)&region=eu"]
        assert_no_secret(entry, "hunter2-secret", "zzz-secret")


# --- API tokens ---------------------------------------------------------------------------------------------------------


class TestApiTokens:
    def test_creating_one_on_the_page(self, member_client, member, team):
        """api_token.created: name, owner, prefix, scope, expiry; never the key or its hash."""
        response = member_client.post(
            reverse("accounts:tokens"), {"name": "ci", "scope": "read", "expires_in_days": 30}
        )
        assert response.status_code == 200
        key = response.context["issued_key"]
        token = ApiToken.objects.get(user=member, name="ci")
        entry = only("api_token.created", object_id=str(token.pk))
        assert_attributed(entry, user=member, team=team, via="page")
        assert entry.object_type == "api_token" and entry.object_repr == f"ci ({token.key_prefix}…)"
        assert entry.changes["name"] == [None, "ci"] and entry.changes["user"] == [None, member.username]
        assert entry.changes["key_prefix"] == [None, token.key_prefix] and entry.changes["scope"] == [None, "read"]
        assert entry.changes["expires_at"][1] is not None
        assert_no_secret(entry, key, token.key_hash, PASSWORD)

    def test_creating_one_through_the_api(self, member_api, member, team):
        response = member_api.post("/api/v1/tokens", {"name": "deploy"}, format="json")
        assert response.status_code == 201
        entry = only("api_token.created", object_id=str(response.json()["id"]))
        assert_attributed(entry, user=member, team=team, via="api")
        assert "API token “test”" in entry.actor_label  # the token the request was made with
        assert_no_secret(entry, response.json()["key"], api_key_of(member_api))

    def test_an_api_login_issues_one_by_the_person_signing_in(self, anon_api, member, team):
        """POST /api/v1/auth/login: nobody is signed in yet, so the entry names the person signing in."""
        body = {"username": member.username, "password": PASSWORD, "name": "script"}
        response = anon_api.post("/api/v1/auth/login", body, format="json")
        assert response.status_code == 200
        entry = only("api_token.created", changes__name=[None, "script"])
        assert entry.actor_id == member.pk and entry.actor_label == f"{member.username} (signing in)"
        assert entry.via == "api" and entry.team_id == team.pk and entry.ip == "127.0.0.1"
        assert_no_secret(entry, response.json()["key"], PASSWORD, member.password)

    def test_revoking_on_the_page_and_through_the_api(self, member_client, member_api, member, team):
        """api_token.revoked, with when as "after"."""
        first = member_client.post(reverse("accounts:tokens"), {"name": "one"}).context["issued_key"]
        second = member_client.post(reverse("accounts:tokens"), {"name": "two"}).context["issued_key"]
        one, two = ApiToken.objects.get(name="one"), ApiToken.objects.get(name="two")
        assert member_client.post(reverse("accounts:token-revoke", args=[one.pk])).status_code == 302
        assert member_api.delete(f"/api/v1/tokens/{two.pk}").status_code == 204
        on_page, by_api = entries(action="api_token.revoked")
        assert on_page.object_id == str(one.pk) and by_api.object_id == str(two.pk)
        assert_attributed(on_page, user=member, team=team, via="page")
        assert_attributed(by_api, user=member, team=team, via="api")
        assert on_page.changes["revoked_at"][0] is None and on_page.changes["revoked_at"][1]
        for entry in (on_page, by_api):
            assert_no_secret(entry, first, second, one.key_hash, two.key_hash, api_key_of(member_api))

    def test_revoking_with_the_admin_action(self, admin_client_team, admin_user, member, team):
        from apps.accounts.services import token_create

        issued = token_create(user=member, team=team, name="old")
        changelist = "/admin/accounts/apitoken/"
        admin_client_team.post(changelist, {"action": "revoke", "_selected_action": [issued.token.pk]})
        entry = only("api_token.revoked")
        assert_attributed(entry, user=admin_user, team=team, via="admin")
        assert_no_secret(entry, issued.key, issued.token.key_hash)

    def test_renaming_one_in_the_admin(self, admin_client_team, admin_user, member, team):
        """api_token.changed: the name is the one field the admin may change; before/after, never the key."""
        from apps.accounts.services import token_create

        issued = token_create(user=member, team=team, name="laptop")
        change = f"/admin/accounts/apitoken/{issued.token.pk}/change/"
        assert admin_client_team.post(change, {"name": "ci-runner"}).status_code == 302
        entry = only("api_token.changed", object_id=str(issued.token.pk))
        assert_attributed(entry, user=admin_user, team=team, via="admin")
        assert entry.changes == {"name": ["laptop", "ci-runner"]}
        assert_no_secret(entry, issued.key, issued.token.key_hash)


# --- memberships and roles --------------------------------------------------------------------------------------


class TestMemberships:
    def test_adding_changing_and_removing_a_member_in_the_admin(self, admin_client_team, admin_user, team):
        """membership.created, membership.role_changed (viewer → member), membership.removed — via the admin."""
        newcomer = UserFactory(username="newcomer")
        response = admin_client_team.post("/admin/accounts/membership/add/", {"user": newcomer.pk, "role": "viewer"})
        assert response.status_code == 302
        membership = Membership.objects.get(user=newcomer, team=team)
        change = f"/admin/accounts/membership/{membership.pk}/change/"
        assert admin_client_team.post(change, {"user": newcomer.pk, "role": "member"}).status_code == 302
        delete = f"/admin/accounts/membership/{membership.pk}/delete/"
        assert admin_client_team.post(delete, {"post": "yes"}).status_code == 302
        added = only("membership.created", object_id=str(membership.pk))
        changed = only("membership.role_changed")
        removed = only("membership.removed")
        for entry in (added, changed, removed):
            assert_attributed(entry, user=admin_user, team=team, via="admin")
            assert entry.object_type == "membership" and entry.object_id == str(membership.pk)
            assert_no_secret(entry, PASSWORD, newcomer.password)
        assert added.changes == {"user": [None, "newcomer"], "role": [None, "viewer"]}
        assert changed.changes == {"role": ["viewer", "member"]}
        assert removed.changes == {"user": ["newcomer", None], "role": ["member", None]}

    def test_saving_a_membership_without_a_new_role_writes_nothing(self, team, member):
        membership = Membership.objects.get(user=member, team=team)
        membership.save()
        assert not entries(action="membership.role_changed")

    def test_a_change_by_code_outside_a_request_is_the_systems(self, team, member):
        membership_set(user=member, team=team, role="admin")
        entry = only("membership.role_changed")
        assert (entry.actor_label, entry.via, entry.team_id) == ("system", "system", team.pk)
        assert entry.changes == {"role": ["member", "admin"]}


# --- team settings ----------------------------------------------------------------------------------------------


class TestTeamSettings:
    def test_changing_the_budget_and_limits_in_the_admin(self, admin_client_team, admin_user, team):
        """team.settings_changed with before/after of the budget, the sweep limits and show_simulated."""
        body = {"name": team.name, "slug": team.slug, "batch_confirm_requests": 500, "batch_confirm_cost_usd": "12.5",
                "monthly_budget_usd": "300", "show_simulated": "on"}  # fmt: skip
        response = admin_client_team.post(f"/admin/accounts/team/{team.pk}/change/", body)
        assert response.status_code == 302
        entry = only("team.settings_changed")
        assert_attributed(entry, user=admin_user, team=team, via="admin")
        assert entry.object_type == "team" and entry.object_id == str(team.pk)
        assert entry.changes == {
            "batch_confirm_requests": [1000, 500],
            "batch_confirm_cost_usd": [None, 12.5],
            "monthly_budget_usd": [None, 300.0],
            "show_simulated": [False, True],
        }
        assert_no_secret(entry, PASSWORD)

    @pytest.mark.usefixtures("db")
    def test_registering_creates_a_team_by_the_newcomer(self, anon_api, settings):
        """team.created when someone registers (REGISTRATION_OPEN): the new team, its name and slug, by the newcomer."""
        settings.REGISTRATION_OPEN = True
        body = {"username": "newcomer", "email": "new@example.com", "password": "a-Long-unusual-pass-42",
                "team_name": "New Lab"}  # fmt: skip
        response = anon_api.post("/api/v1/auth/register", body, format="json")
        assert response.status_code == 201, response.json()
        entry = only("team.created")
        assert entry.object_type == "team" and entry.team_label == "New Lab" and entry.via == "api"
        assert entry.changes["name"] == [None, "New Lab"] and entry.changes["slug"] == [None, "new-lab"]
        assert entry.ip == "127.0.0.1" and entry.request_id
        assert_no_secret(entry, body["password"], response.json()["key"])


# --- test-case reviews --------------------------------------------------------------------------------------------


def pending_case(team, author, title="Capital") -> TestCase:
    return testcase_create(team=team, author=author, submit=True, title=title, prompt="Capital of France?",
                           expected_output="Paris")  # fmt: skip


class TestTestCaseReviews:
    def test_approving_on_the_page(self, admin_client_team, admin_user, member, team):
        case = pending_case(team, member)
        assert admin_client_team.post(reverse("experiments:testcase-approve", args=[case.pk])).status_code == 302
        entry = only("test_case.approved")
        assert_attributed(entry, user=admin_user, team=team, via="page")
        assert (entry.object_type, entry.object_id, entry.object_repr) == ("test_case", str(case.pk), "Capital v1")
        assert entry.changes["status"] == ["pending", "approved"]
        assert entry.changes["reviewer"] == [None, str(admin_user)]  # named, not an id

    def test_rejecting_through_the_api_keeps_the_reason(self, admin_api, admin_user, member, team):
        case = pending_case(team, member)
        url = f"/api/v1/admin/testcases/{case.pk}/reject"
        assert admin_api.post(url, {"reason": "ambiguous"}, format="json").status_code == 200
        entry = only("test_case.rejected")
        assert_attributed(entry, user=admin_user, team=team, via="api")
        assert entry.changes["status"] == ["pending", "rejected"]
        assert entry.changes["review_reason"] == ["", "ambiguous"]
        assert_no_secret(entry, api_key_of(admin_api))

    def test_approving_and_rejecting_with_the_admin_actions(self, admin_client_team, admin_user, member, team):
        approve, reject = pending_case(team, member, "One"), pending_case(team, member, "Two")
        changelist = "/admin/experiments/testcase/"
        admin_client_team.post(changelist, {"action": "approve", "_selected_action": [approve.pk]})
        admin_client_team.post(
            changelist, {"action": "reject", "_selected_action": [reject.pk], "confirm": "1", "reason": "vague"}
        )
        approved, rejected = only("test_case.approved"), only("test_case.rejected")
        assert approved.object_id == str(approve.pk) and rejected.object_id == str(reject.pk)
        for entry in (approved, rejected):
            assert_attributed(entry, user=admin_user, team=team, via="admin")

    def test_editing_and_submitting_are_not_reviews(self, team, member):
        """Only decisions are audited: writing and submitting a case writes no entry."""
        pending_case(team, member)
        assert not entries(object_type="test_case")


# --- deletes of runs, experiments, sweeps and suites ---------------------------------------------------------------


class TestDeletes:
    def test_an_experiment_through_the_api(self, member_api, member, team):
        experiment = Experiment.objects.create(team=team, name="temps", prompt="Hi", status="completed")
        assert member_api.delete(f"/api/v1/experiments/{experiment.pk}").status_code == 204
        entry = only("experiment.deleted")
        assert_attributed(entry, user=member, team=team, via="api")
        assert (entry.object_type, entry.object_id, entry.object_repr) == ("experiment", str(experiment.pk), "temps")
        assert entry.changes["name"] == ["temps", None] and entry.changes["status"] == ["completed", None]
        assert_no_secret(entry, api_key_of(member_api))

    def test_a_parameter_sweep_on_the_page_and_through_the_api(self, member_client, member_api, member, team):
        from tests.batches.helpers import make_batch, sim_endpoint

        endpoint = sim_endpoint(team)
        on_page, by_api = (
            make_batch(team, endpoint=endpoint, name="one"),
            make_batch(team, endpoint=endpoint, name="two"),
        )
        assert member_client.post(reverse("batches:batch-delete", args=[on_page.pk])).status_code == 302
        assert member_api.delete(f"/api/v1/batches/{by_api.pk}").status_code == 204
        page_entry, api_entry = entries(action="parameter_sweep.deleted")
        assert page_entry.object_type == "parameter_sweep" and page_entry.object_repr == "one"
        assert_attributed(page_entry, user=member, team=team, via="page")
        assert_attributed(api_entry, user=member, team=team, via="api")
        assert not entries(action="experiment.deleted")

    def test_a_capacity_search_on_the_page(self, member_client, member, team):
        from tests.capacity.helpers import make_search

        search = make_search(team, name="how far")
        assert member_client.post(reverse("capacity:delete", args=[search.pk])).status_code == 302
        entry = only("capacity_search.deleted")
        assert_attributed(entry, user=member, team=team, via="page")
        assert (entry.object_type, entry.object_id, entry.object_repr) == ("capacity_search", str(search.pk), "how far")

    def test_a_capacity_search_through_the_api(self, member_api, member, team):
        from tests.capacity.helpers import make_search

        search = make_search(team, name="api search")
        assert member_api.delete(f"/api/v1/capacity/{search.pk}").status_code == 204
        assert_attributed(only("capacity_search.deleted"), user=member, team=team, via="api")

    def test_a_load_sweep(self, team):
        """Load sweeps have no delete of their own on pages or the API (a capacity search deletes its sweep); any
        delete of one is recorded."""
        from apps.batches.services import sweep_create
        from tests.batches.helpers import sim_endpoint
        from tests.factories import ModelVariantFactory

        sweep = sweep_create(team=team, user=None, name="load", endpoint=sim_endpoint(team), model="sim-small",
                             variant=ModelVariantFactory(team=team), levels=[1, 2], step_request_count=1)  # fmt: skip
        sweep.delete()
        entry = only("load_sweep.deleted")
        assert (entry.object_type, entry.object_repr, entry.via, entry.team_id) == (
            "load_sweep",
            "load",
            "system",
            team.pk,
        )

    def test_benchmark_suites_and_runs(self, member_client, member_api, member, team):
        from tests.benchmarks.test_api import run_for, suite_for

        run = run_for(team, name="mini run", status="completed")
        assert member_api.delete(f"/api/v1/benchmark-runs/{run.pk}").status_code == 204
        assert member_client.post(reverse("benchmarks:suite-delete", args=[run.suite_id])).status_code == 302
        run_entry, suite_entry = only("benchmark_run.deleted"), only("benchmark_suite.deleted")
        assert_attributed(run_entry, user=member, team=team, via="api")
        assert_attributed(suite_entry, user=member, team=team, via="page")
        assert run_entry.object_repr == "mini run" and suite_entry.object_id == str(run.suite_id)
        assert suite_entry.changes["name"] == ["MMLU mini", None] and suite_entry.changes["version"] == [1, None]
        suite_for(team)  # a suite nobody deletes writes nothing
        assert len(entries(action__endswith=".deleted")) == 2

    def test_a_suite_kept_because_it_has_runs_writes_nothing(self, member_client, team):
        """A delete refused (ProtectedError) or rolled back leaves no entry."""
        from tests.benchmarks.test_api import run_for

        run = run_for(team)
        member_client.post(reverse("benchmarks:suite-delete", args=[run.suite_id]))
        assert not entries(action="benchmark_suite.deleted")

    def test_uploaded_performance_runs_on_the_page_and_through_the_api(self, member_client, member_api, member, team):
        from tests.hardware.helpers import stored_run

        on_page, by_api = stored_run(team, name="page run"), stored_run(team, name="api run")
        assert member_client.post(reverse("hardware:run-delete", args=[on_page.pk])).status_code == 302
        assert member_api.delete(f"/api/v1/performance/runs/{by_api.pk}").status_code == 204
        page_entry, api_entry = entries(action="performance_run.deleted")
        assert (page_entry.object_type, page_entry.object_repr) == ("performance_run", str(on_page))
        assert page_entry.changes["tool"] == ["test", None]
        assert_attributed(page_entry, user=member, team=team, via="page")
        assert_attributed(api_entry, user=member, team=team, via="api")

    def test_workloads_and_datasets(self, member_client, member_api, member, team):
        from tests.workloads.test_api import make_dataset, make_workload

        on_page, by_api, dataset = make_workload(team, name="chat"), make_workload(team, name="rag"), make_dataset(team)
        assert member_client.post(reverse("workloads:delete", args=[on_page.pk])).status_code == 302
        assert member_api.delete(f"/api/v1/workloads/{by_api.pk}").status_code == 204
        assert member_api.delete(f"/api/v1/workload-datasets/{dataset.pk}").status_code == 204
        page_entry, api_entry = entries(action="workload.deleted")
        assert (page_entry.object_repr, api_entry.object_repr) == ("chat", "rag")
        assert_attributed(page_entry, user=member, team=team, via="page")
        assert_attributed(api_entry, user=member, team=team, via="api")
        assert_attributed(only("workload_dataset.deleted"), user=member, team=team, via="api")

    def test_a_test_suite(self, team):
        suite = Suite.objects.create(team=team, name="smoke", version=2)
        suite.delete()
        entry = only("suite.deleted")
        assert (entry.object_repr, entry.changes["version"]) == ("smoke v2", [2, None])

    def test_a_test_case_in_the_admin(self, admin_client_team, admin_user, member, team):
        """test_case.deleted: a team admin deletes a test case no response refers to."""
        case = pending_case(team, member, title="Capital of Peru")
        delete = f"/admin/experiments/testcase/{case.pk}/delete/"
        assert admin_client_team.post(delete, {"post": "yes"}).status_code == 302
        assert not TestCase.objects.filter(pk=case.pk).exists()
        entry = only("test_case.deleted", object_id=str(case.pk))
        assert_attributed(entry, user=admin_user, team=team, via="admin")
        assert entry.object_repr == "Capital of Peru v1" and entry.changes["title"] == ["Capital of Peru", None]


# --- exports and downloads ------------------------------------------------------------------------------------------


class TestDownloads:
    def test_a_page_download(self, viewer_client, viewer, team):
        from tests.hardware.helpers import stored_run

        run = stored_run(team, name="r")
        response = viewer_client.get(reverse("hardware:run-export-csv", args=[run.pk]))
        assert response.status_code == 200 and response["Content-Disposition"].startswith("attachment")
        b"".join(response.streaming_content)
        entry = only("export.downloaded")
        assert_attributed(entry, user=viewer, team=team, via="page")
        assert entry.object_type == "export" and entry.object_id == f"/performance/runs/{run.pk}/export.csv"
        assert entry.changes["route"] == [None, "hardware:run-export-csv"]
        assert entry.changes["query"] == [None, ""] and entry.changes["filename"][1].endswith(".csv")

    def test_an_api_download_keeps_the_query_without_secret_values(self, viewer_api, viewer, team):
        from tests.hardware.helpers import stored_run

        run = stored_run(team)
        response = viewer_api.get(f"/api/v1/performance/runs/{run.pk}/export?format=csv&access_token=leaked-value")
        assert response.status_code == 200
        entry = only("export.downloaded")
        assert_attributed(entry, user=viewer, team=team, via="api")
        assert entry.changes["route"][1].endswith("run-export")
        assert entry.changes["query"] == [None, "format=csv&access_token=(hidden)"]
        assert_no_secret(entry, "leaked-value", api_key_of(viewer_api))

    def test_pages_and_failed_downloads_are_not_downloads(self, viewer_client, team):
        assert viewer_client.get(reverse("hardware:runs")).status_code == 200
        assert viewer_client.get(reverse("hardware:run-export-csv", args=[999999])).status_code == 404
        assert not entries(action="export.downloaded")
