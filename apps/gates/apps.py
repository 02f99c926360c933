from django.apps import AppConfig


class GatesConfig(AppConfig):
    name = "apps.gates"
    verbose_name = "CI gates"
