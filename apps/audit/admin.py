"""The audit trail in the admin: team admins read their team's entries; nobody adds, changes or deletes one."""

from django.contrib import admin

from apps.audit.models import AuditEntry
from llmbench.admin import TeamScopedAdmin


@admin.register(AuditEntry)
class AuditEntryAdmin(TeamScopedAdmin):
    list_display = ["at", "actor_label", "action", "object_type", "object_repr", "via", "ip"]
    list_filter = ["via", "action", "object_type"]
    search_fields = ["actor_label", "action", "object_repr", "request_id"]
    date_hierarchy = "at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
