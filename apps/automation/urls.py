"""automation pages."""

app_name = "automation"
urlpatterns: list = []
