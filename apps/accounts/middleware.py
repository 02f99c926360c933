"""Puts the active team on every request: `request.membership` and `request.team` (or None), and the
user's memberships for the team switcher (`request.memberships`)."""

from apps.accounts.models import Membership
from apps.accounts.services import ACTIVE_TEAM_SESSION_KEY


def _memberships_and_active(request) -> tuple[list[Membership], Membership | None]:
    """Every membership of the signed-in user (by team name, with its team) and the active one, chosen
    as services.active_membership chooses it (the session's team, else the first by name): one query
    for both, since every page shows the team switcher too."""
    user = request.user
    if not user.is_authenticated:
        return [], None
    memberships = list(Membership.objects.filter(user=user).select_related("team"))  # Meta: by team name
    chosen = request.session.get(ACTIVE_TEAM_SESSION_KEY)
    if chosen is not None:
        for membership in memberships:
            if membership.team_id == chosen:
                return memberships, membership
    return memberships, memberships[0] if memberships else None


class ActiveTeamMiddleware:
    """One query per signed-in request; API token requests replace both in authentication."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.memberships, request.membership = _memberships_and_active(request)
        request.team = request.membership.team if request.membership else None
        return self.get_response(request)
