"""CI gates (issue 17): a check run again against the change under test, judged by criteria.

A gate repeats a template run (`kind` + `template_run_id`, or a saved check's) with an optional endpoint / model
override, waits for it, and judges its figures (apps.automation.runkinds.run_figures) by thresholds and, against a
pinned baseline run, by the regression tests (runkinds.run_compare). Runs are referenced by kind and id (five run
kinds in four apps), not by foreign keys.
"""

from django.conf import settings
from django.db import models

from apps.accounts.models import TeamOwned
from apps.automation.models import RunKind as Kind
from apps.automation.runkinds import RunRef, run_url
from apps.providers.models import ProviderEndpoint


class RunLinks:
    """The pages of the runs a saved check or gate names, as paths ("" for none). Runs are referenced by kind and id,
    so a deleted run's page answers 404."""

    kind: str
    template_run_id: int
    baseline_run_id: int | None

    def _page(self, run_id: int | None) -> str:
        return run_url(RunRef(self.kind, run_id)) if run_id else ""

    @property
    def template_url(self) -> str:
        return self._page(self.template_run_id)

    @property
    def baseline_url(self) -> str:
        return self._page(self.baseline_run_id)


class GateCheck(RunLinks, TeamOwned):
    """A saved check, started by name (`--check nightly-quality`): what to run again and how to judge it."""

    name = models.SlugField(max_length=100, help_text="Letters, digits, - and _: the name a pipeline gives.")
    description = models.CharField(max_length=300, blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    template_run_id = models.PositiveBigIntegerField(help_text="The run repeated by each gate (its configuration).")
    endpoint = models.ForeignKey(
        ProviderEndpoint, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Run against this endpoint instead of the template's (optional).",
    )  # fmt: skip
    model = models.CharField(max_length=200, blank=True, help_text="Ask this model instead of the template's.")
    criteria = models.JSONField(default=list, help_text='e.g. ["pass_rate >= 0.9", "no significant regression"]')
    baseline_run_id = models.PositiveBigIntegerField(null=True, blank=True, help_text="The pinned baseline run.")
    alpha = models.FloatField(default=0.05)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")  # fmt: skip
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="gates_check_unique_name")]

    def __str__(self) -> str:
        return self.name


class Gate(RunLinks, TeamOwned):
    """One gate: the run it started and the verdict on each criterion."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for its run to start"
        RUNNING = "running", "Its run is running"
        PASSED = "passed", "Passed"
        FAILED = "failed", "Failed"
        ERROR = "error", "Could not be judged"

    FINISHED = (Status.PASSED, Status.FAILED, Status.ERROR)

    name = models.CharField(max_length=200, blank=True)
    saved_check = models.ForeignKey(GateCheck, null=True, blank=True, on_delete=models.SET_NULL, related_name="gates")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    template_run_id = models.PositiveBigIntegerField()
    endpoint = models.ForeignKey(ProviderEndpoint, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model = models.CharField(max_length=200, blank=True)
    criteria = models.JSONField(default=list)
    baseline_run_id = models.PositiveBigIntegerField(null=True, blank=True)
    alpha = models.FloatField(default=0.05)
    run_id = models.PositiveBigIntegerField(null=True, blank=True, help_text="The run this gate started (of `kind`).")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    reason = models.TextField(blank=True)
    # one per criterion: {"text", "kind": "threshold"|"regression", "figure", "label", "unit", "value", "interval",
    # "operator", "threshold", "test", "p_value", "passed", "detail", "comparisons" (regression only)}
    results = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")  # fmt: skip
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["team", "-created_at"], name="gates_team_created"),
            models.Index(fields=["status"], name="gates_status"),
        ]

    def __str__(self) -> str:
        return f"Gate #{self.pk}"

    @property
    def run_url(self) -> str:
        return self._page(self.run_id)

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED
