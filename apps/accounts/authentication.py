"""DRF authentication by API token: `Authorization: Token <key>` or `Bearer <key>`."""

from rest_framework import authentication, exceptions

from apps.accounts.services import token_authenticate


class TokenAuthentication(authentication.BaseAuthentication):
    """Authenticates the token's user and pins the request to the token's team."""

    keywords = ("token", "bearer")

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].decode(errors="replace").lower() not in self.keywords:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header: expected 'Token <key>'.")
        try:
            key = header[1].decode()
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token header.") from None
        found = token_authenticate(key)
        if found is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        token, membership = found
        # A token acts within its own team, whatever team the session may have chosen.
        request._request.membership = membership
        request._request.team = membership.team
        return token.user, token

    def authenticate_header(self, request):
        return "Token"
