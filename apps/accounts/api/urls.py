from django.urls import path
from rest_framework.routers import SimpleRouter

from apps.accounts.api import views

router = SimpleRouter(trailing_slash="/?")
router.register("tokens", views.ApiTokenViewSet, basename="token")

urlpatterns = [path("me", views.me, name="me"), *router.urls]
