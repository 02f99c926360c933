"""API of standard benchmarks: /api/v1/benchmark-suites and /api/v1/benchmark-runs (with the runs' progress
stream)."""

from django.urls import path

from apps.benchmarks.api import views
from llmbench.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("benchmark-suites", views.BenchmarkSuiteViewSet, basename="benchmark-suite")
router.register("benchmark-runs", views.BenchmarkRunViewSet, basename="benchmark-run")
urlpatterns = [
    path("benchmark-runs/<int:pk>/progress", views.benchmark_run_progress_sse, name="benchmark-run-progress"),
    *router.urls,
]
