from django.contrib import admin

from apps.providers.models import ProviderEndpoint
from llmbench.admin import TeamScopedAdmin


@admin.register(ProviderEndpoint)
class ProviderEndpointAdmin(TeamScopedAdmin):
    """Keys are not editable here (they are write-only on the endpoint page); only the hint shows."""

    list_display = ["name", "kind", "base_url", "key_hint", "max_concurrency", "last_test_ok"]
    list_filter = ["kind"]
    search_fields = ["name", "base_url"]
    exclude = ["api_key_encrypted"]
    readonly_fields = ["key_hint", "last_test_at", "last_test_ok", "last_test_message"]
