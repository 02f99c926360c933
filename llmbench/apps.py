"""The project package as an app: its templates, management commands and the team-aware admin."""

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class LlmbenchConfig(AppConfig):
    default = True
    name = "llmbench"
    verbose_name = "llmbench"

    def ready(self) -> None:
        from llmbench import (
            checks,  # noqa: F401  (registers the deploy checks)
            signins,
            task_context,
            telemetry,
        )

        telemetry.configure()  # before the request handler is built: tracing wraps its middleware
        task_context.connect()  # tasks log (and trace) under the request that queued them
        signins.connect()  # password sign-ins and lockouts counted for /metrics


class LlmbenchAdminConfig(admin_apps.AdminConfig):
    default = False
    default_site = "llmbench.admin.TeamAdminSite"
