"""Websocket routes of standard benchmarks (collected by llmbench/routing.py)."""

from django.urls import path

from apps.benchmarks.consumers import BenchmarkRunProgressConsumer

websocket_urlpatterns = [
    path("ws/benchmark-runs/<int:run_id>/", BenchmarkRunProgressConsumer.as_asgi()),
]
