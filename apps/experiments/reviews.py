"""A team admin's decision on a pending test case, from the admin action or the test case's page: the same
service (testcase_approve / testcase_reject) and the same admin-log entry either way."""

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import AbstractBaseUser

from apps.experiments.models import TestCase
from apps.experiments.services import testcase_approve, testcase_reject

VERBS = {"approve": "Approved", "reject": "Rejected"}


def testcase_review(*, testcase: TestCase, reviewer: AbstractBaseUser, decision: str, reason: str = "") -> TestCase:
    """Approve or reject (`decision`) a pending version and log it as the admin does ("Approved v2",
    "Rejected v1: <reason>"); TransitionRefused when it is not pending or a rejection has no reason.
    Callers check that the reviewer is an admin of the test case's team."""
    if decision == "approve":
        testcase = testcase_approve(testcase=testcase, reviewer=reviewer)
    elif decision == "reject":
        testcase = testcase_reject(testcase=testcase, reviewer=reviewer, reason=reason)
    else:
        raise ValueError(f"unknown decision {decision!r}")
    message = f"{VERBS[decision]} v{testcase.version}" + (
        f": {testcase.review_reason}" if testcase.review_reason else ""
    )
    # What ModelAdmin.log_change writes, so the admin's history shows decisions made on the page too.
    LogEntry.objects.log_actions(
        user_id=reviewer.pk, queryset=[testcase], action_flag=CHANGE, change_message=message, single_object=True
    )
    return testcase
