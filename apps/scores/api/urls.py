from apps.scores.api import views
from llmbench.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("variants", views.ModelVariantViewSet, basename="variant")
router.register("benchmarks", views.BenchmarkViewSet, basename="benchmark")
router.register("scores", views.ScoreViewSet, basename="score")
urlpatterns = router.urls
