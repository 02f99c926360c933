from rest_framework.routers import SimpleRouter

from apps.scores.api import views

router = SimpleRouter(trailing_slash="/?")
router.register("variants", views.ModelVariantViewSet, basename="variant")
router.register("benchmarks", views.BenchmarkViewSet, basename="benchmark")
router.register("scores", views.ScoreViewSet, basename="score")
urlpatterns = router.urls
