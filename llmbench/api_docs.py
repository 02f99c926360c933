"""The OpenAPI schema and its Swagger UI page: for signed-in users and API tokens unless API_DOCS_PUBLIC."""

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import BasePermission


class ApiDocsAccess(BasePermission):
    """Any authenticated user (session or token, in any team): the schema describes the API, not a team's
    data. Read per request, so that overriding API_DOCS_PUBLIC takes effect without reloading the URLs."""

    def has_permission(self, request, view) -> bool:
        return settings.API_DOCS_PUBLIC or bool(request.user and request.user.is_authenticated)


class SchemaView(SpectacularAPIView):
    """/api/schema/: anonymous requests get DRF's 401 (with `WWW-Authenticate: Token`)."""

    permission_classes = [ApiDocsAccess]


class DocsView(SpectacularSwaggerView):
    """/api/docs/: Swagger UI, rendered by templates/drf_spectacular/swagger_ui.html (nonce on its inline code)."""

    permission_classes = [ApiDocsAccess]


_docs_view = DocsView.as_view(url_name="schema")


def docs(request, *args, **kwargs):
    """A person who is not signed in is sent to the login page and back, rather than shown DRF's 401
    through the Swagger template (an empty page)."""
    if not (settings.API_DOCS_PUBLIC or request.user.is_authenticated):
        return redirect_to_login(request.get_full_path())
    return _docs_view(request, *args, **kwargs)
