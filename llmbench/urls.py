"""URL map: pages per app, the API under /api/v1/, operations endpoints, admin."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from llmbench import api_docs, views

api_v1 = [
    path("", include("apps.accounts.api.urls")),
    path("", include("apps.audit.api.urls")),
    path("", include("apps.scores.api.urls")),
    path("", include("apps.workloads.api.urls")),
    path("", include("apps.hardware.api.urls")),
    path("", include("apps.providers.api.urls")),
    path("", include("apps.batches.api.urls")),
    path("", include("apps.capacity.api.urls")),
    path("", include("apps.benchmarks.api.urls")),
    path("", include("apps.experiments.api.urls")),
    path("", include("apps.analytics.api.urls")),
    path("", include("apps.notifications.api.urls")),
    path("", include("apps.automation.api.urls")),
    path("", include("apps.gates.api.urls")),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password/", auth_views.PasswordChangeView.as_view(success_url="/password/done/"), name="password_change"),
    path("password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("", include("apps.accounts.urls")),
    # single sign-on: /oidc/authenticate/ and /oidc/callback/ (apps/accounts/oidc.py; off unless OIDC_ISSUER)
    path("oidc/", include("apps.accounts.oidc_urls")),
    path("audit/", include("apps.audit.urls")),
    path("scores/", include("apps.scores.urls")),
    path("workloads/", include("apps.workloads.urls")),
    path("performance/", include("apps.hardware.urls")),
    path("providers/", include("apps.providers.urls")),
    path("experiments/", include("apps.experiments.urls")),
    path("batches/", include("apps.batches.urls")),
    path("capacity/", include("apps.capacity.urls")),
    path("benchmarks/", include("apps.benchmarks.urls")),
    path("analytics/", include("apps.analytics.urls")),
    path("notifications/", include("apps.notifications.urls")),
    path("automation/", include("apps.automation.urls")),
    path("gates/", include("apps.gates.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    # Signed-in users and API tokens only, unless API_DOCS_PUBLIC=true.
    path("api/schema/", api_docs.SchemaView.as_view(), name="schema"),
    path("api/docs/", api_docs.docs, name="api-docs"),
    path("health", views.health, name="health"),
    path("ready", views.ready, name="ready"),
    path("metrics", views.metrics, name="metrics"),
]

handler400 = "llmbench.views.error_400"
handler403 = "llmbench.views.error_403"
handler404 = "llmbench.views.error_404"
handler500 = "llmbench.views.error_500"
