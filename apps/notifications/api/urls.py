"""Notifications API: /api/v1/notification-channels (admins), /api/v1/notification-deliveries (admins, read),
/api/v1/notification-preferences (everyone: their own)."""

from django.urls import re_path

from apps.notifications.api import views
from llmbench.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("notification-channels", views.ChannelViewSet, basename="notification-channel")
router.register("notification-deliveries", views.DeliveryViewSet, basename="notification-delivery")

urlpatterns = [
    re_path(r"^notification-preferences/?$", views.PreferenceView.as_view(), name="notification-preferences"),
    *router.urls,
]
