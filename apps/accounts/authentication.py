"""DRF authentication by API token: `Authorization: Token <key>` or `Bearer <key>`."""

from rest_framework import authentication, exceptions

from apps.accounts.services import token_authenticate, token_refusal_reason
from llmbench.throttling import note_auth_failure


class TokenAuthentication(authentication.BaseAuthentication):
    """Authenticates the token's user and pins the request to the token's team."""

    keywords = ("token", "bearer")

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].decode(errors="replace").lower() not in self.keywords:
            return None
        if len(header) != 2:
            self._refuse(request, "Invalid token header: expected 'Token <key>'.")
        try:
            key = header[1].decode()
        except UnicodeDecodeError:
            self._refuse(request, "Invalid token header.")
        found = token_authenticate(key)
        if found is None:
            self._refuse(request, token_refusal_reason(key))
        token, membership = found
        # A token acts within its own team, whatever team the session may have chosen.
        request._request.membership = membership
        request._request.team = membership.team
        return token.user, token

    @staticmethod
    def _refuse(request, message: str):
        """401, after counting the failure against the caller's address (over the limit: 429)."""
        note_auth_failure(request)
        raise exceptions.AuthenticationFailed(message)

    def authenticate_header(self, request):
        return "Token"
