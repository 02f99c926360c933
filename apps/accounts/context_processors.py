"""Template context: the active team, the user's role in it and the teams to switch to."""

from apps.accounts.services import memberships_for


def team(request) -> dict:
    membership = getattr(request, "membership", None)
    match = getattr(request, "resolver_match", None)
    return {
        "nav_section": (match.namespace or match.url_name) if match else "",
        "active_team": membership.team if membership else None,
        "active_role": membership.role if membership else None,
        "is_team_admin": bool(membership and membership.has_role("admin")),
        "can_write": bool(membership and membership.has_role("member")),
        # The middleware read them with the active membership (same query); a request it did not see
        # (a test's RequestFactory) reads them here.
        "user_memberships": lambda: (
            request.memberships if hasattr(request, "memberships") else memberships_for(request.user)
        ),
    }
