from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.models import Membership
from apps.notifications.api.serializers import (
    ChannelCreatedSerializer,
    ChannelSerializer,
    DeliverySerializer,
    PreferenceSerializer,
)
from apps.notifications.events import EVENTS
from apps.notifications.filters import DeliveryFilter
from apps.notifications.models import Channel, Delivery, DeliveryAttempt
from apps.notifications.services import (
    channel_create,
    channel_delete,
    channel_rotate_secret,
    channel_test,
    channel_update,
    preference_events,
    preference_set,
)
from llmbench.api import TeamScopedViewSet

SECRET_ANSWER = {"secret": serializers.CharField(help_text="The signing secret: shown only this once.")}


class ChannelViewSet(TeamScopedViewSet):
    """The team's notification channels (e-mail addresses and webhooks): team admins only. Creating a webhook
    answers its signing secret once (`secret`); /rotate-secret makes a new one; /test sends a test message now."""

    queryset = Channel.objects.all()
    serializer_class = ChannelSerializer
    read_role = Membership.Role.ADMIN
    write_role = Membership.Role.ADMIN

    @extend_schema(responses={201: ChannelCreatedSerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        channel, secret = channel_create(
            team=request.team, user=request.user, name=data["name"], kind=data["kind"], url=data.get("url", ""),
            email=data.get("email", ""), fmt=data.get("format") or Channel.Format.GENERIC,
            events=data.get("events", []), active=data.get("active", True),
        )  # fmt: skip
        body = self.get_serializer(channel).data
        if secret:
            body["secret"] = secret
        return Response(body, status=201)

    def perform_update(self, serializer):
        fields = dict(serializer.validated_data)
        fields.pop("kind", None)
        if "format" in fields:
            fields["fmt"] = fields.pop("format")
        serializer.instance, _ = channel_update(channel=serializer.instance, **fields)

    def perform_destroy(self, instance):
        channel_delete(channel=instance)

    @extend_schema(
        request=None,
        responses={
            200: inline_serializer("ChannelSecret", SECRET_ANSWER),
            400: OpenApiResponse(description="An e-mail channel: no secret."),
        },
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        """A new signing secret for a webhook; the old one stops working at once."""
        channel = self.get_object()
        if not channel.is_webhook:
            return Response({"detail": "Only webhook channels have a signing secret."}, status=400)
        return Response({"secret": channel_rotate_secret(channel=channel)})

    @extend_schema(request=None, responses={200: DeliverySerializer, 502: DeliverySerializer})
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Send a test message now (one try): the delivery with the channel's answer; 200 sent, 502 failed."""
        delivery = channel_test(channel=self.get_object())
        body = DeliverySerializer(delivery).data
        return Response(body, status=200 if delivery.status == Delivery.Status.SENT else 502)


class DeliveryViewSet(viewsets.ReadOnlyModelViewSet):
    """Every delivery of the team's notifications, newest first, with each try's answer: team admins only.
    Filters: status (pending, sent, failed), event, channel (id), since and until (dates, UTC)."""

    queryset = Delivery.objects.none()
    serializer_class = DeliverySerializer
    filterset_class = DeliveryFilter
    read_role = Membership.Role.ADMIN
    write_role = Membership.Role.ADMIN

    def get_queryset(self):
        attempts = Prefetch("attempt_log", queryset=DeliveryAttempt.objects.order_by("number"))
        return Delivery.objects.filter(team=self.request.team).select_related("event").prefetch_related(attempts)


class PreferenceView(APIView):
    """The events the signed-in user receives by e-mail in the token's (or session's) team. Every role reads and
    sets its own choices (it is about one's own inbox)."""

    read_role = Membership.Role.VIEWER
    write_role = Membership.Role.VIEWER

    def _body(self, request) -> Response:
        events = preference_events(team_id=request.team.pk, user_id=request.user.pk)
        return Response({"events": events, "email": request.user.email, "available": EVENTS})

    @extend_schema(responses=PreferenceSerializer)
    def get(self, request):
        return self._body(request)

    @extend_schema(request=PreferenceSerializer, responses=PreferenceSerializer)
    def put(self, request):
        """Choose the events you receive by e-mail (the whole list)."""
        serializer = PreferenceSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        preference_set(team=request.team, user=request.user, events=serializer.validated_data["events"])
        return self._body(request)

    @extend_schema(request=PreferenceSerializer, responses=PreferenceSerializer)
    def patch(self, request):
        """The same as PUT."""
        return self.put(request)
