from axes.helpers import get_cool_off, get_failure_limit
from django.conf import settings
from django.contrib.auth import authenticate, get_user_model, user_logged_in
from django.db import IntegrityError
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, mixins, viewsets
from rest_framework.decorators import api_view
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.api.serializers import (
    ApiTokenSerializer,
    IssuedTokenSerializer,
    LoginSerializer,
    MeSerializer,
    RegisterSerializer,
    SignedInSerializer,
)
from apps.accounts.models import ApiToken, Membership
from apps.accounts.services import (
    IssuedToken,
    account_register,
    login_membership,
    login_token_days,
    memberships_for,
    token_create,
    token_revoke,
)
from llmbench.api import Conflict
from llmbench.metrics import LOGINS
from llmbench.throttling import note_auth_failure


@extend_schema(responses=MeSerializer)
@api_view(["GET"])
def me(request):
    """The signed-in user, the team this request acts in, all their teams, and the API token the request
    was made with (null for a browser session)."""
    data = {
        "username": request.user.get_username(),
        "team": request.membership,
        "teams": memberships_for(request.user),
        "token": request.auth if isinstance(request.auth, ApiToken) else None,
    }
    return Response(MeSerializer(data).data)


def _signed_in(issued: IssuedToken, membership: Membership) -> dict:
    return SignedInSerializer(
        {"key": issued.key, "token": issued.token, "username": membership.user.get_username(), "team": membership}
    ).data


class LockedOut(exceptions.APIException):
    """429 for a username or address locked out by django-axes; `wait` becomes Retry-After."""

    status_code = 429
    default_code = "locked_out"

    def __init__(self, detail: str, wait: int):
        super().__init__(detail)
        self.wait = wait


class LoginView(APIView):
    """Sign in with a username and password and get a new API key (for scripts). Wrong passwords count
    towards the login lockout like the sign-in page's; refused when PASSWORD_LOGIN is off."""

    authentication_classes: list = []  # the body carries the credentials (and no session: no CSRF)
    permission_classes = [AllowAny]

    def get_authenticate_header(self, request) -> str:
        return "Token"  # a 401 says which scheme to use next

    @extend_schema(request=LoginSerializer, responses={200: SignedInSerializer}, auth=[])
    def post(self, request):
        if not settings.PASSWORD_LOGIN:
            raise exceptions.PermissionDenied(
                "Signing in with a password is turned off on this server: sign in with single sign-on in the "
                "browser and create a key on the API tokens page."
            )
        serializer = LoginSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            days = login_token_days(data.get("expires_in_days"), limit_days=settings.API_LOGIN_TOKEN_DAYS)
        except ValueError as exc:
            raise exceptions.ValidationError({"expires_in_days": [str(exc)]}) from None
        # Through django.contrib.auth, so django-axes (the first backend) refuses a locked-out user or
        # address and counts this attempt if it fails.
        django_request = request._request
        user = authenticate(request=django_request, username=data["username"], password=data["password"])
        if user is None:
            locked = bool(getattr(django_request, "axes_locked_out", False))
            # This view answers in JSON itself: AxesMiddleware would swap the answer for the HTML lockout page.
            django_request.axes_locked_out = False
            LOGINS.labels("api", "locked" if locked else "failure").inc()
            note_auth_failure(request)
            if locked:
                raise self._locked_out(django_request)
            raise exceptions.AuthenticationFailed("Wrong username or password.")
        LOGINS.labels("api", "success").inc()
        # A sign-in like the page's (the lockout counter resets, last_login is set), without a session.
        user_logged_in.send(sender=user.__class__, request=django_request, user=user)
        membership = login_membership(user=user, team_slug=data.get("team"))
        if membership is None and data.get("team"):
            raise exceptions.ValidationError({"team": ["You are not a member of a team with this slug."]})
        if membership is None:
            raise exceptions.PermissionDenied("You are not a member of any team: a team admin must add you first.")
        issued = token_create(
            user=user, team=membership.team, name=data["name"], expires_in_days=days, scope=data["scope"]
        )
        return Response(_signed_in(issued, membership))

    @staticmethod
    def _locked_out(django_request) -> LockedOut:
        cool_off = get_cool_off(django_request)
        wait_s = int(cool_off.total_seconds()) if cool_off else 0
        limit = get_failure_limit(django_request, None)
        until = f"for {max(1, round(wait_s / 60))} minutes" if wait_s else "until an admin unlocks it"
        return LockedOut(
            f"Too many failed sign-ins ({limit}) for this username or from this address: signing in is locked "
            f"{until}. A team admin can unlock it sooner.",
            wait=wait_s,
        )


class RegisterView(APIView):
    """Create an account, a team of your own (you are its admin) and a first API key. Only when
    REGISTRATION_OPEN is true."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(request=RegisterSerializer, responses={201: SignedInSerializer}, auth=[])
    def post(self, request):
        if not settings.REGISTRATION_OPEN:
            raise exceptions.PermissionDenied(
                "Registration is closed on this server (REGISTRATION_OPEN): ask a team admin for an account."
            )
        if not settings.PASSWORD_LOGIN:
            raise exceptions.PermissionDenied(
                "Registration is closed: signing in with a password is turned off, accounts come from single sign-on."
            )
        if settings.OIDC_ENABLED:
            # Single sign-on matches accounts by e-mail, and a registration proves no address: someone could register
            # a colleague's address first and be in the account their single sign-on then lands in.
            raise exceptions.PermissionDenied(
                "Registration is closed while single sign-on is on: sign in with "
                f"{settings.OIDC_PROVIDER_NAME} instead, which makes your account."
            )
        serializer = RegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            registration = account_register(
                username=data["username"],
                email=data["email"],
                password=data["password"],
                team_name=data["team_name"],
                token_days=login_token_days(None, limit_days=settings.API_LOGIN_TOKEN_DAYS),
            )
        except IntegrityError:  # a registration of the same name got there between the check and the insert
            if get_user_model().objects.filter(username__iexact=data["username"]).exists():
                raise exceptions.ValidationError({"username": ["This username is taken."]}) from None
            raise Conflict("Another registration got there first; try again.") from None
        return Response(_signed_in(registration.issued, registration.membership), status=201)


class ApiTokenViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Your API keys in the current team. Creating returns the key once; deleting revokes it."""

    queryset = ApiToken.objects.none()  # for the schema; requests use get_queryset
    serializer_class = ApiTokenSerializer
    write_role = Membership.Role.VIEWER  # a personal key; it carries the user's own role

    def get_queryset(self):
        return ApiToken.objects.filter(user=self.request.user, team=self.request.team)

    @extend_schema(responses={201: IssuedTokenSerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        issued = token_create(
            user=request.user,
            team=request.team,
            name=data["name"],
            expires_in_days=data.get("expires_in_days"),
            scope=data.get("scope", ApiToken.Scope.FULL),
        )
        issued.token.key = issued.key
        return Response(IssuedTokenSerializer(issued.token).data, status=201)

    def perform_destroy(self, instance):
        token_revoke(token=instance)
