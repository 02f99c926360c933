from django.urls import path

from apps.batches.api import views
from llmbench.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("sweeps", views.LoadSweepViewSet, basename="sweep")
router.register("batches", views.BatchViewSet, basename="batch")
urlpatterns = [
    path("sweeps/<int:pk>/progress", views.sweep_progress_sse, name="sweep-progress"),
    path("batches/<int:pk>/progress", views.batch_progress_sse, name="batch-progress"),
    path("export/batch", views.BatchExportView.as_view(), name="export-batch"),
    *router.urls,
]
