"""Websocket routes, collected from the apps that push live progress."""

from apps.batches.routing import websocket_urlpatterns as batches_routes

websocket_urlpatterns = [*batches_routes]
