from apps.providers.api import views
from llmbench.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("providers/endpoints", views.ProviderEndpointViewSet, basename="endpoint")
urlpatterns = router.urls
