from django.urls import path

from apps.batches.consumers import BatchProgressConsumer, SweepProgressConsumer

websocket_urlpatterns = [
    path("ws/sweeps/<int:sweep_id>/", SweepProgressConsumer.as_asgi()),
    path("ws/batches/<int:batch_id>/", BatchProgressConsumer.as_asgi()),
]
