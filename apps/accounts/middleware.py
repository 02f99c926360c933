"""Puts the active team on every request: `request.membership` and `request.team` (or None)."""

from apps.accounts.services import active_membership


class ActiveTeamMiddleware:
    """One query per signed-in request; API token requests replace both in authentication."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.membership = active_membership(request)
        request.team = request.membership.team if request.membership else None
        return self.get_response(request)
