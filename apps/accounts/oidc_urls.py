"""Single sign-on URLs. CONTRACT STUB: issue 16 helper fills it (mozilla-django-oidc's views)."""

urlpatterns: list = []
