"""CI gates API: /api/v1/gates (start, list, read) and /api/v1/gate-checks (saved checks)."""

from apps.gates.api import views
from llmbench.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("gates", views.GateViewSet, basename="gate")
router.register("gate-checks", views.GateCheckViewSet, basename="gate-check")

urlpatterns = router.urls
