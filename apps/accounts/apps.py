from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"

    def ready(self) -> None:
        from django.core import checks

        from apps.accounts import (
            oidc,
            schema,  # noqa: F401  (registers the OpenAPI auth extension)
        )

        checks.register(oidc.sso_settings_check)  # a bad OIDC_GROUP_MAP stops start-up with its entry named
