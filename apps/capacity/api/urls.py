from django.urls import path

from apps.capacity.api import views
from llmbench.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("capacity", views.CapacitySearchViewSet, basename="capacity")
urlpatterns = [
    path("capacity/<int:pk>/progress", views.capacity_progress_sse, name="capacity-progress"),
    *router.urls,
]
