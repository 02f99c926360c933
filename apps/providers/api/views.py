from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.accounts.models import Membership
from apps.providers.api.serializers import ProviderEndpointSerializer
from apps.providers.models import ProviderEndpoint
from apps.providers.services import endpoint_save, endpoint_test
from llmbench.api import TeamScopedViewSet


class ProviderEndpointViewSet(TeamScopedViewSet):
    """Provider endpoints of the team. Everyone reads; team admins create, change, delete, test."""

    queryset = ProviderEndpoint.objects.all()
    serializer_class = ProviderEndpointSerializer
    write_role = Membership.Role.ADMIN

    def perform_create(self, serializer):
        self._save(serializer, ProviderEndpoint(team=self.request.team))

    def perform_update(self, serializer):
        self._save(serializer, serializer.instance)

    def _save(self, serializer, endpoint: ProviderEndpoint) -> None:
        data = dict(serializer.validated_data)
        api_key = data.pop("api_key", None)
        for field, value in data.items():
            setattr(endpoint, field, value)
        serializer.instance = endpoint_save(endpoint=endpoint, api_key=api_key)

    @extend_schema(
        request=None,
        responses=inline_serializer(
            "ConnectionTest", {"ok": serializers.BooleanField(), "message": serializers.CharField()}
        ),
    )
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """List the endpoint's models to check the URL and the key."""
        ok, message = endpoint_test(endpoint=self.get_object())
        return Response({"ok": ok, "message": message}, status=200 if ok else 502)
