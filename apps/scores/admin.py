from django.contrib import admin

from apps.scores.models import Benchmark, ModelVariant, Score
from llmbench.admin import TeamScopedAdmin


@admin.register(ModelVariant)
class ModelVariantAdmin(TeamScopedAdmin):
    list_display = ["model_name", "quantization", "family", "parameters_b", "created_at"]
    list_filter = ["quantization", "family"]
    search_fields = ["model_name", "family"]


@admin.register(Benchmark)
class BenchmarkAdmin(TeamScopedAdmin):
    list_display = ["name", "scale_max", "higher_is_better"]
    search_fields = ["name", "description"]


@admin.register(Score)
class ScoreAdmin(TeamScopedAdmin):
    list_display = [
        "variant",
        "benchmark",
        "value_pct",
        "stderr_pct",
        "n_shot",
        "source",
        "evaluated_at",
        "origin",
        "is_simulated",
    ]
    list_filter = ["benchmark", "variant__quantization", "origin", "is_simulated"]
    # Measured scores come from a run: their figures are shown, not edited (the outcomes are not editable at all).
    readonly_fields = ["origin", "ci_low_pct", "ci_high_pct", "n_items", "provenance"]
    search_fields = ["variant__model_name", "benchmark__name", "source"]
    list_select_related = ["variant", "benchmark"]
    raw_id_fields = []
