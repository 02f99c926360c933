from django.urls import path

from apps.accounts.api import views
from llmbench.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("tokens", views.ApiTokenViewSet, basename="token")

urlpatterns = [path("me", views.me, name="me"), *router.urls]
