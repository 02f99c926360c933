from apps.experiments.api import views
from llmbench.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("testcases", views.TestCaseViewSet, basename="testcase")
router.register("admin/testcases", views.ReviewViewSet, basename="review")
router.register("experiments", views.ExperimentViewSet, basename="experiment")
urlpatterns = router.urls
