"""Websocket routes, collected from the apps that push live progress."""

websocket_urlpatterns: list = []
