from django.urls import path

from apps.batches.consumers import SweepProgressConsumer

websocket_urlpatterns = [path("ws/sweeps/<int:sweep_id>/", SweepProgressConsumer.as_asgi())]
