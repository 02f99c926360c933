from django.contrib import admin

from apps.hardware.models import Deployment, HardwareProfile, PerformanceRun, RunSummary
from llmbench.admin import TeamScopedAdmin


@admin.register(HardwareProfile)
class HardwareProfileAdmin(TeamScopedAdmin):
    list_display = ["name", "accelerator", "accelerator_count", "memory_per_device_gb", "hourly_cost_usd"]
    search_fields = ["name", "accelerator", "cpu"]


@admin.register(Deployment)
class DeploymentAdmin(TeamScopedAdmin):
    list_display = ["name", "engine", "engine_version", "tensor_parallel", "pipeline_parallel"]
    list_filter = ["engine"]
    search_fields = ["name", "engine_version"]


class RunSummaryInline(admin.StackedInline):
    model = RunSummary
    can_delete = False
    readonly_fields = [f.name for f in RunSummary._meta.fields if f.name != "id"]
    extra = 0

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(PerformanceRun)
class PerformanceRunAdmin(TeamScopedAdmin):
    list_display = [
        "__str__",
        "variant",
        "hardware",
        "deployment",
        "concurrency",
        "request_rate_rps",
        "tool",
        "created_at",
    ]
    list_filter = ["tool", "source_format", "deployment__engine"]
    search_fields = ["name", "variant__model_name", "hardware__name", "dataset"]
    list_select_related = ["variant", "hardware", "deployment"]
    readonly_fields = ["source_format", "source_filename", "created_by", "created_at"]
    inlines = [RunSummaryInline]
