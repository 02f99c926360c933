"""gates API."""

urlpatterns: list = []
