"""automation API."""

urlpatterns: list = []
