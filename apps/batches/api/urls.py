from django.urls import path

from apps.batches.api import views
from llmbench.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("sweeps", views.LoadSweepViewSet, basename="sweep")
urlpatterns = [path("sweeps/<int:pk>/progress", views.sweep_progress_sse, name="sweep-progress"), *router.urls]
