"""automation API: /api/v1/schedules (and /pause, /resume, /runs)."""

from apps.automation.api import views
from llmbench.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("schedules", views.ScheduleViewSet, basename="schedule")

urlpatterns = router.urls
