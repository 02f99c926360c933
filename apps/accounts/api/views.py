from drf_spectacular.utils import extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import api_view
from rest_framework.response import Response

from apps.accounts.api.serializers import ApiTokenSerializer, IssuedTokenSerializer, MeSerializer
from apps.accounts.models import ApiToken, Membership
from apps.accounts.services import memberships_for, token_create, token_revoke


@extend_schema(responses=MeSerializer)
@api_view(["GET"])
def me(request):
    """The signed-in user, the team this request acts in, and all their teams."""
    data = {
        "username": request.user.get_username(),
        "team": request.membership,
        "teams": memberships_for(request.user),
    }
    return Response(MeSerializer(data).data)


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

    @extend_schema(responses=IssuedTokenSerializer)
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = token_create(user=request.user, team=request.team, name=serializer.validated_data["name"])
        issued.token.key = issued.key
        return Response(IssuedTokenSerializer(issued.token).data, status=201)

    def perform_destroy(self, instance):
        token_revoke(token=instance)
