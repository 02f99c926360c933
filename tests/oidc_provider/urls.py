"""The provider's URLs: OAuth 2 / OpenID Connect under /o/, a login form, and a control endpoint the
tests use to change a user's groups between two sign-ins."""

import json
import os

from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.models import Group
from django.http import HttpResponseForbidden, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST


@csrf_exempt
@require_POST
def set_groups(request, username):
    """Sets a user's groups: body {"groups": [...]}; needs the X-Control-Secret header."""
    if request.headers.get("X-Control-Secret") != os.environ["OIDC_PROVIDER_CONTROL_SECRET"]:
        return HttpResponseForbidden("bad control secret")
    names = json.loads(request.body)["groups"]
    user = get_user_model().objects.get(username=username)
    user.groups.set([Group.objects.get_or_create(name=name)[0] for name in names])
    return JsonResponse({"groups": sorted(names)})


urlpatterns = [
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("control/groups/<str:username>/", set_groups),
]
