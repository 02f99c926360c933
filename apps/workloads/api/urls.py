from llmbench.api import OptionalSlashRouter

router = OptionalSlashRouter()
urlpatterns = [*router.urls]
