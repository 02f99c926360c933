from django.urls import path

from apps.experiments.api import views
from llmbench.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("testcases", views.TestCaseViewSet, basename="testcase")
router.register("admin/testcases", views.ReviewViewSet, basename="review")
router.register("experiments", views.ExperimentViewSet, basename="experiment")
router.register("executions", views.ExperimentViewSet, basename="execution")  # seed 003's name for runs
router.register("suites", views.SuiteViewSet, basename="suite")
router.register("responses", views.ResponseViewSet, basename="response")
urlpatterns = [
    path("testcases/export", views.testcases_export, name="testcases-export"),
    path("testcases/import", views.testcases_import, name="testcases-import"),
    path("testcases/<int:pk>/run", views.testcase_run, name="testcase-run"),
    path("experiments/<int:pk>/progress", views.experiment_progress_sse, name="experiment-progress"),
    *router.urls,
]
