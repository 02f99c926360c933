"""Websocket routes, collected from the apps that push live progress."""

from django.urls import path

from apps.batches.routing import websocket_urlpatterns as batches_routes
from apps.benchmarks.routing import websocket_urlpatterns as benchmarks_routes
from llmbench.consumers import DashboardConsumer

websocket_urlpatterns = [
    *batches_routes,
    *benchmarks_routes,
    path("ws/dashboard/", DashboardConsumer.as_asgi()),
]
