"""Benchmark suites and runs in the team admin: to look at and rename. Suites are made by importing files and runs
by the new-run page (both check what the admin cannot), so the admin adds neither; its delete follows the models'
protection (a suite with runs stays)."""

from django.contrib import admin

from apps.benchmarks.models import BenchmarkRun, BenchmarkSuite, BenchmarkTarget
from llmbench.admin import TeamScopedAdmin


@admin.register(BenchmarkSuite)
class BenchmarkSuiteAdmin(TeamScopedAdmin):
    list_display = ["name", "version", "kind", "item_count", "fewshot_count", "created_by", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name", "description", "file_name"]
    list_select_related = ["created_by"]
    fields = ["name", "description", "version", "kind", "benchmark", "source_format", "file_name", "sha256",
              "item_count", "fewshot_count", "subjects", "task", "created_by", "created_at"]  # fmt: skip
    readonly_fields = [f for f in fields if f not in ("name", "description")]

    def has_add_permission(self, request):
        return False


class BenchmarkTargetInline(admin.TabularInline):
    model = BenchmarkTarget
    fields = ["endpoint", "model", "variant"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(BenchmarkRun)
class BenchmarkRunAdmin(TeamScopedAdmin):
    list_display = ["name", "suite", "status", "item_count", "completed_answers", "failed_answers", "created_at"]
    list_filter = ["status"]
    search_fields = ["name", "suite__name"]
    list_select_related = ["suite"]
    inlines = [BenchmarkTargetInline]
    fields = ["name", "suite", "status", "shots", "temperature", "max_tokens", "concurrency", "subset_size",
              "subset_seed", "item_count", "estimate", "completed_answers", "failed_answers", "error",
              "cancel_requested", "lease", "heartbeat_at", "recoveries", "created_by", "created_at", "queued_at",
              "started_at", "finished_at"]  # fmt: skip
    readonly_fields = [f for f in fields if f != "name"]

    def has_add_permission(self, request):
        return False
