"""Audit trail API: GET /api/v1/audit-entries and /api/v1/audit-entries/<id> (team admins)."""

from apps.audit.api import views
from llmbench.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("audit-entries", views.AuditEntryViewSet, basename="audit-entry")

urlpatterns = router.urls
