"""Approval in the Django admin, in a browser: a team admin approves; a member is kept out."""

import pytest
from playwright.sync_api import expect

from apps.accounts.models import Membership
from apps.experiments.models import TestCase
from apps.experiments.services import testcase_create
from tests.browser.conftest import log_in
from tests.factories import MembershipFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_admin_approves_and_a_member_cannot(browser, live_server):
    admin = MembershipFactory(role=Membership.Role.ADMIN, team__name="Alpha", team__slug="alpha")
    member = MembershipFactory(role=Membership.Role.MEMBER, team=admin.team)
    case = testcase_create(team=admin.team, author=member.user, submit=True, title="Capital", prompt="Capital of France?",
                           expected_output="Paris")  # fmt: skip

    context = browser.new_context(base_url=live_server.url)
    page = context.new_page()
    log_in(page, member.user.username)
    page.goto("/admin/experiments/testcase/")
    expect(page.locator("body")).to_contain_text("admins of the active team")
    context.close()

    context = browser.new_context(base_url=live_server.url)
    page = context.new_page()
    log_in(page, admin.user.username)
    page.goto("/admin/experiments/testcase/")
    page.check(f"input[name=_selected_action][value='{case.pk}']")
    page.select_option("select[name=action]", "approve")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("Approved 1 test case")
    case.refresh_from_db()
    assert case.status == TestCase.Status.APPROVED and case.reviewer == admin.user
    context.close()
