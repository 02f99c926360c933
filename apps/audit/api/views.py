from rest_framework import viewsets

from apps.accounts.models import Membership
from apps.audit.api.serializers import AuditEntrySerializer
from apps.audit.filters import AuditEntryFilter
from apps.audit.models import AuditEntry


class AuditEntryViewSet(viewsets.ReadOnlyModelViewSet):
    """The team's audit trail, newest first: team admins only. Entries are append-only: there is no way to
    create, change or delete one through the API. Filters: action, actor (part of the username), object_type,
    via (page, api, admin, system), since and until (dates, UTC, inclusive)."""

    queryset = AuditEntry.objects.none()  # for the schema; requests use get_queryset
    serializer_class = AuditEntrySerializer
    filterset_class = AuditEntryFilter
    read_role = Membership.Role.ADMIN
    write_role = Membership.Role.ADMIN  # no write method exists; members and viewers get 403 before the 405

    def get_queryset(self):
        return AuditEntry.objects.filter(team=self.request.team)
