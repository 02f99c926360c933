"""gates pages."""

app_name = "gates"
urlpatterns: list = []
