"""Test case operations: write, submit, approve, reject; each leaves a trail."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from apps.accounts.models import Team
from apps.experiments.models import Experiment, ExperimentTarget, Suite, TestCase
from apps.providers.models import ProviderEndpoint

CONTENT_FIELDS = ("title", "system_prompt", "prompt", "expected_output", "evaluator", "evaluator_settings", "tags")


class TransitionRefused(ValueError):
    """The test case is not in a state that allows this; the message says why."""


def testcase_create(*, team: Team, author: AbstractBaseUser, submit: bool = False, **fields) -> TestCase:
    status = TestCase.Status.PENDING if submit else TestCase.Status.DRAFT
    return TestCase.objects.create(team=team, author=author, status=status, **fields)


@transaction.atomic
def testcase_update(*, testcase: TestCase, author: AbstractBaseUser, **fields) -> TestCase:
    """Change a test case. A draft, pending or rejected version is edited in place (and goes back
    to pending when it was rejected); an approved one gets a new pending version."""
    testcase = TestCase.objects.select_for_update().get(pk=testcase.pk)
    if not testcase.is_current:
        raise TransitionRefused("Only the latest version of a test case can be edited.")
    if testcase.status != TestCase.Status.APPROVED:
        for name, value in fields.items():
            setattr(testcase, name, value)
        if testcase.status == TestCase.Status.REJECTED:
            testcase.status = TestCase.Status.PENDING
        testcase.save()
        return testcase
    TestCase.objects.filter(pk=testcase.pk).update(is_current=False)
    content = {name: getattr(testcase, name) for name in CONTENT_FIELDS}
    content.update(fields)
    return TestCase.objects.create(
        team=testcase.team, lineage=testcase.lineage, version=testcase.version + 1, author=author,
        status=TestCase.Status.PENDING, **content,
    )  # fmt: skip


def testcase_submit(*, testcase: TestCase) -> TestCase:
    if testcase.status not in (TestCase.Status.DRAFT, TestCase.Status.REJECTED):
        raise TransitionRefused(f"A {testcase.status} test case cannot be submitted.")
    testcase.status = TestCase.Status.PENDING
    testcase.save(update_fields=["status"])
    return testcase


def _review(testcase: TestCase, reviewer: AbstractBaseUser, status: str, reason: str) -> TestCase:
    if testcase.status != TestCase.Status.PENDING:
        raise TransitionRefused(f"Only pending test cases can be reviewed; this one is {testcase.status}.")
    testcase.status, testcase.reviewer, testcase.reviewed_at, testcase.review_reason = (
        status, reviewer, timezone.now(), reason,
    )  # fmt: skip
    testcase.save(update_fields=["status", "reviewer", "reviewed_at", "review_reason"])
    return testcase


def testcase_approve(*, testcase: TestCase, reviewer: AbstractBaseUser) -> TestCase:
    """Approve a pending version (callers check that the reviewer is a team admin)."""
    return _review(testcase, reviewer, TestCase.Status.APPROVED, "")


def testcase_reject(*, testcase: TestCase, reviewer: AbstractBaseUser, reason: str) -> TestCase:
    if not reason.strip():
        raise TransitionRefused("A rejection needs a reason.")
    return _review(testcase, reviewer, TestCase.Status.REJECTED, reason.strip())


# --- experiments ----------------------------------------------------------------------------


@transaction.atomic
def suite_publish(*, team: Team, name: str, test_cases: list[TestCase], description: str = "") -> Suite:
    """A new version of the suite `name` with these approved test-case versions."""
    if not test_cases:
        raise TransitionRefused("A suite needs at least one test case.")
    if any(c.team_id != team.pk or c.status != TestCase.Status.APPROVED for c in test_cases):
        raise TransitionRefused("A suite holds approved test cases of the team only.")
    last = Suite.objects.filter(team=team, name=name).order_by("-version").first()
    suite = Suite.objects.create(
        team=team, name=name, description=description, version=(last.version + 1) if last else 1
    )
    suite.test_cases.set(test_cases)
    return suite


@transaction.atomic
def experiment_create(
    *,
    team: Team,
    user: AbstractBaseUser | None,
    name: str,
    targets: list[tuple[ProviderEndpoint, str]],
    test_cases: list[TestCase] | None = None,
    **fields,
) -> Experiment:
    """An experiment over approved test cases (or its own prompt) and one or more targets."""
    suite = fields.get("suite")
    if suite is not None:
        if suite.team_id != team.pk:
            raise TransitionRefused("The suite must belong to the team.")
        test_cases = list(suite.test_cases.all())
    cases = list(test_cases or [])
    if any(c.team_id != team.pk or c.status != TestCase.Status.APPROVED for c in cases):
        raise TransitionRefused("Only approved test cases of the team can run.")
    if any(endpoint.team_id != team.pk for endpoint, _ in targets):
        raise TransitionRefused("Every endpoint must belong to the team.")
    experiment = Experiment.objects.create(team=team, created_by=user, name=name, **fields)
    experiment.test_cases.set(cases)
    ExperimentTarget.objects.bulk_create(
        ExperimentTarget(experiment=experiment, endpoint=e, model=m) for e, m in targets
    )
    return experiment


def experiment_start(*, experiment: Experiment) -> Experiment:
    """Queue the run (only its primary key travels); a failed experiment resumes where it stopped."""
    if experiment.kind != Experiment.Kind.SINGLE:
        raise TransitionRefused("This is a parameter sweep: start it from its batch.")
    if experiment.status in (Experiment.Status.RUNNING, Experiment.Status.COMPLETED, Experiment.Status.CANCELLED):
        raise TransitionRefused(f"The experiment is {experiment.status}.")
    Experiment.objects.filter(pk=experiment.pk).update(status=Experiment.Status.PENDING, cancel_requested=False)
    transaction.on_commit(lambda: async_task("apps.experiments.tasks.experiment_run", experiment.pk))
    experiment.refresh_from_db()
    return experiment


def experiment_cancel(*, experiment: Experiment) -> Experiment:
    Experiment.objects.filter(pk=experiment.pk).update(cancel_requested=True)
    Experiment.objects.filter(pk=experiment.pk, status=Experiment.Status.PENDING).update(
        status=Experiment.Status.CANCELLED, finished_at=timezone.now()
    )
    experiment.refresh_from_db()
    return experiment
