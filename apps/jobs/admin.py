"""The fair queue in the admin: team admins read their team's jobs (what waits, what runs, what was lost)."""

from django.contrib import admin

from apps.jobs.models import Job
from llmbench.admin import TeamScopedAdmin


@admin.register(Job)
class JobAdmin(TeamScopedAdmin):
    list_display = ["label", "state", "queued_at", "started_at", "finished_at", "attempts", "error"]
    list_filter = ["state", "group"]
    search_fields = ["label", "func"]
    date_hierarchy = "queued_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # a deleted queued job would leave its run waiting for its recovery
