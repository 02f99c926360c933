"""Team admins review test cases here: pending first, approve or reject with a reason, a diff of
a new version against the last approved one; every decision is in the admin log."""

import difflib

from django.contrib import admin, messages
from django.db.models import Case, IntegerField, Value, When
from django.shortcuts import render
from django.utils.html import format_html

from apps.experiments.models import TestCase
from apps.experiments.reviews import VERBS, testcase_review
from apps.experiments.services import TransitionRefused
from llmbench.admin import TeamScopedAdmin

REVIEWED_FIELDS = ("title", "system_prompt", "prompt", "expected_output", "evaluator", "evaluator_settings", "tags")


def _as_text(case: TestCase) -> list[str]:
    return [f"{name}: {getattr(case, name)}" for name in REVIEWED_FIELDS]


@admin.register(TestCase)
class TestCaseAdmin(TeamScopedAdmin):
    list_display = ["title", "version", "status", "evaluator", "author", "reviewer", "reviewed_at"]
    list_filter = ["status", "evaluator", "is_current"]
    search_fields = ["title", "prompt", "expected_output"]
    readonly_fields = ["status", "version", "author", "reviewer", "reviewed_at", "review_reason", "diff"]
    actions = ["approve", "reject"]

    def get_queryset(self, request):
        pending_first = Case(
            When(status=TestCase.Status.PENDING, then=Value(0)), default=Value(1), output_field=IntegerField()
        )
        return (
            super()
            .get_queryset(request)
            .annotate(pending_first=pending_first)
            .order_by("pending_first", "title", "-version")
        )

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and (obj.status == TestCase.Status.APPROVED or not obj.is_current):
            fields += list(REVIEWED_FIELDS)  # an approved version never changes; editing makes a new one
        return fields

    def save_model(self, request, obj, form, change):
        if not change:
            obj.author = request.user
        super().save_model(request, obj, form, change)

    @admin.display(description="Changes against the last approved version")
    def diff(self, case: TestCase) -> str:
        approved = case.last_approved() if case.pk else None
        if approved is None:
            return "No earlier approved version."
        lines = difflib.unified_diff(
            _as_text(approved), _as_text(case), f"v{approved.version}", f"v{case.version}", lineterm=""
        )
        return format_html("<pre>{}</pre>", "\n".join(lines) or "No changes.")

    def _decide(self, request, queryset, decision: str, reason: str = "") -> None:
        done = 0
        for case in queryset:
            try:
                testcase_review(testcase=case, reviewer=request.user, decision=decision, reason=reason)
            except TransitionRefused as exc:
                self.message_user(request, f"{case}: {exc}", messages.WARNING)
                continue
            done += 1
        if done:
            self.message_user(request, f"{VERBS[decision]} {done} test case(s).", messages.SUCCESS)

    @admin.action(description="Approve the selected pending test cases")
    def approve(self, request, queryset):
        self._decide(request, queryset, "approve")

    @admin.action(description="Reject the selected pending test cases (asks for a reason)")
    def reject(self, request, queryset):
        reason = request.POST.get("reason", "").strip()
        if "confirm" not in request.POST or not reason:
            context = {**self.admin_site.each_context(request), "queryset": queryset, "opts": self.model._meta,
                       "missing_reason": "confirm" in request.POST}  # fmt: skip
            return render(request, "admin/experiments/reject_reason.html", context)
        self._decide(request, queryset, "reject", reason)
        return None
