"""Test case operations (write, submit, approve, reject, retire; each leaves a trail) and
experiment operations (create, update, start, cancel, progress)."""

import uuid
from dataclasses import dataclass
from typing import TypedDict

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from apps.accounts.models import Team
from apps.experiments.models import Experiment, ExperimentTarget, Response, Suite, TestCase
from apps.jobs.services import job_submit
from apps.providers.budget import budget_check
from apps.providers.engine.types import Kind
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


@dataclass(frozen=True)
class RetiredLineage:
    """What retiring a test case did: every version of the lineage left lists and these suites."""

    lineage: uuid.UUID
    versions: int
    suites: list[str]


@transaction.atomic
def testcase_retire(*, test_case: TestCase, user: AbstractBaseUser) -> RetiredLineage:
    """Retire a test case: no version of its lineage is current any more (so it leaves lists and
    editing), and it leaves every suite. Responses and experiments keep the version they ran."""
    versions = list(TestCase.objects.select_for_update().filter(team=test_case.team, lineage=test_case.lineage))
    current = [v for v in versions if v.is_current]
    if not current:
        raise TransitionRefused("This test case is already retired.")
    memberships = Suite.test_cases.through.objects.filter(testcase__in=versions)
    suites = sorted({str(m.suite) for m in memberships.select_related("suite")})
    memberships.delete()
    TestCase.objects.filter(pk__in=[v.pk for v in versions]).update(is_current=False)
    LogEntry.objects.log_actions(
        user_id=user.pk, queryset=current, action_flag=CHANGE,
        change_message=f"Retired all {len(versions)} versions" + (f"; left {', '.join(suites)}." if suites else "."),
    )  # fmt: skip
    return RetiredLineage(lineage=test_case.lineage, versions=len(versions), suites=suites)


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
    # An experiment has no cost estimate: refused (BudgetExceeded) only when nothing of a hard budget is left.
    metered = ExperimentTarget.objects.filter(experiment=experiment).exclude(endpoint__kind=Kind.SIM).exists()
    budget_check(team_id=experiment.team_id, estimate_usd=None if metered else 0.0, what="This experiment")
    Experiment.objects.filter(pk=experiment.pk).update(status=Experiment.Status.PENDING, cancel_requested=False)
    transaction.on_commit(
        lambda: job_submit(
            team_id=experiment.team_id, func="apps.experiments.tasks.experiment_run", args=(experiment.pk,)
        )
    )
    experiment.refresh_from_db()
    return experiment


def experiment_cancel(*, experiment: Experiment) -> Experiment:
    Experiment.objects.filter(pk=experiment.pk).update(cancel_requested=True)
    Experiment.objects.filter(pk=experiment.pk, status=Experiment.Status.PENDING).update(
        status=Experiment.Status.CANCELLED, finished_at=timezone.now()
    )
    experiment.refresh_from_db()
    return experiment


RUN_FIELDS = ("system_prompt", "prompt", "parameters", "responses_per_item")


@transaction.atomic
def experiment_update(*, experiment: Experiment, **fields) -> Experiment:
    """Change an experiment. Its name, description, tags and flags change at any time; what it asks
    (`RUN_FIELDS`) only while nothing has been asked yet, so every response answers the stored setup."""
    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    if not fields:
        return experiment
    changed = [name for name in RUN_FIELDS if name in fields and fields[name] != getattr(experiment, name)]
    if changed:
        if experiment.kind != Experiment.Kind.SINGLE:
            raise TransitionRefused("This is a parameter sweep: its setup belongs to its batch.")
        if experiment.status == Experiment.Status.RUNNING or Response.objects.filter(experiment=experiment).exists():
            raise TransitionRefused(
                f"The experiment has started: {', '.join(changed)} can no longer change. Create a new experiment."
            )
    for name, value in fields.items():
        setattr(experiment, name, value)
    experiment.save(update_fields=list(fields))
    return experiment


class ExperimentProgress(TypedDict):
    """One progress event of an experiment (the SSE stream's `data`)."""

    id: int
    status: str
    error: str
    done: int
    failed: int
    total: int
    progress: float
    finished: bool


FINISHED_STATUSES = (Experiment.Status.COMPLETED, Experiment.Status.FAILED, Experiment.Status.CANCELLED)


def experiment_progress(experiment: Experiment) -> ExperimentProgress:
    """How far an experiment is, from the database: stored responses (`done`, of which `failed` carry
    an error) out of targets × items × responses per item (`total`)."""
    items = experiment.test_cases.filter(status=TestCase.Status.APPROVED).count() or 1  # else its own prompt
    total = experiment.targets.count() * items * experiment.responses_per_item
    counts = Response.objects.filter(experiment=experiment).aggregate(
        done=Count("id"), failed=Count("id", filter=~Q(error_code=""))
    )
    return ExperimentProgress(
        id=experiment.pk, status=experiment.status, error=experiment.error, done=counts["done"],
        failed=counts["failed"], total=total, progress=round(100.0 * counts["done"] / total, 1) if total else 0.0,
        finished=experiment.status in FINISHED_STATUSES,
    )  # fmt: skip
