"""Role checks shared by the API (a DRF permission) and the HTML views (a decorator)."""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render
from rest_framework import permissions

from apps.accounts.models import ApiToken, Membership

READ_ONLY_TOKEN_MESSAGE = "This API token is read-only: it may only read (GET, HEAD, OPTIONS). Use a token with the full scope to change things."


class TeamRolePermission(permissions.BasePermission):
    """Signed in with a team; reading needs viewer, writing the view's `write_role` (member) and a
    token of the full scope (a read-only token only reads)."""

    message = "Your role in this team does not allow this."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        membership = getattr(request._request, "membership", None)
        if membership is None:
            self.message = "You are not a member of any team."
            return False
        if request.method in permissions.SAFE_METHODS:
            role = getattr(view, "read_role", Membership.Role.VIEWER)
        else:
            if isinstance(request.auth, ApiToken) and request.auth.scope == ApiToken.Scope.READ:
                self.message = READ_ONLY_TOKEN_MESSAGE
                return False
            role = getattr(view, "write_role", Membership.Role.MEMBER)
        return membership.has_role(role)


def require_role(request, role: str) -> None:
    """Raise 403 unless the active membership has `role` or above."""
    membership = getattr(request, "membership", None)
    if membership is None or not membership.has_role(role):
        raise PermissionDenied(f"This needs the {role} role in the team.")


def team_view(role: str = Membership.Role.VIEWER):
    """Decorate an HTML view: sign-in required, an active team, and at least `role` in it."""

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if request.membership is None:
                return render(request, "accounts/no_team.html", status=403)
            require_role(request, role)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
