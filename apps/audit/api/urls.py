"""Audit trail API. CONTRACT STUB."""

urlpatterns: list = []
