from django.urls import path

from apps.accounts.api import views
from llmbench.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("tokens", views.ApiTokenViewSet, basename="token")

urlpatterns = [
    path("me", views.me, name="me"),
    path("auth/me", views.me, name="auth-me"),
    path("auth/login", views.LoginView.as_view(), name="auth-login"),
    path("auth/register", views.RegisterView.as_view(), name="auth-register"),
    *router.urls,
]
