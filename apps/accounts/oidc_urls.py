"""Single sign-on URLs: /oidc/authenticate/ starts a sign-in, /oidc/callback/ ends it (404 while it is off)."""

from django.urls import path

from apps.accounts import oidc

urlpatterns = [
    path("authenticate/", oidc.SSOStartView.as_view(), name="oidc_authentication_init"),
    path("callback/", oidc.SSOCallbackView.as_view(), name="oidc_authentication_callback"),
]
