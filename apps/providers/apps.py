from django.apps import AppConfig
from django.conf import settings


class ProvidersConfig(AppConfig):
    name = "apps.providers"
    label = "providers"

    def ready(self) -> None:
        from apps.providers.readiness import check_provider_endpoints
        from llmbench.readiness import register_ready_check

        # Settings are read at every /ready, so READY_CHECK_PROVIDERS applies as it is now.
        register_ready_check(
            "providers",
            check_provider_endpoints,
            enabled=lambda: settings.READY_CHECK_PROVIDERS != "off",
            required=lambda: settings.READY_CHECK_PROVIDERS == "require",
        )
