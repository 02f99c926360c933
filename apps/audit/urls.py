"""Audit trail pages. CONTRACT STUB."""

app_name = "audit"
urlpatterns: list = []
