from django.apps import AppConfig


class GatesConfig(AppConfig):
    name = "apps.gates"
    verbose_name = "CI gates"

    def ready(self) -> None:
        # The automation tick judges gates whose run ended; automation sits below gates, so gates registers itself.
        from apps.automation.tasks import tick_hook_register
        from apps.gates.services import gates_evaluate_pending

        tick_hook_register("gates", gates_evaluate_pending)
