"""notifications pages."""

app_name = "notifications"
urlpatterns: list = []
