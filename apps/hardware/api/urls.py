from django.urls import path

from apps.hardware.api import views
from llmbench.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("performance/hardware", views.HardwareProfileViewSet, basename="hardware")
router.register("performance/deployments", views.DeploymentViewSet, basename="deployment")
router.register("performance/runs", views.PerformanceRunViewSet, basename="run")

urlpatterns = [
    path("performance/upload", views.upload, name="performance-upload"),
    path("performance/models", views.models_with_runs, name="performance-models"),
    path("performance/models/<int:variant_id>/runs", views.model_runs, name="performance-model-runs"),
    path("performance/grid", views.grid, name="performance-grid"),
    path("performance/compare", views.compare, name="performance-compare"),
    path("performance/modeling/models", views.modeling_models, name="performance-modeling-models"),
    path("performance/predict", views.predict_view, name="performance-predict"),
    *router.urls,
]
