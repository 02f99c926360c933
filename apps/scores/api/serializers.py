from rest_framework import serializers

from apps.scores.models import Benchmark, ModelVariant, Score, normalize_quantization
from llmbench.api import TeamScopedPrimaryKeyRelatedField


class ModelVariantSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVariant
        fields = ["id", "model_name", "quantization", "family", "parameters_b", "url", "notes", "created_at"]
        read_only_fields = ["created_at"]

    def validate_quantization(self, value: str) -> str:
        value = normalize_quantization(value)
        if not value:
            raise serializers.ValidationError("This field may not be blank.")
        return value

    def validate(self, attrs):
        team = self.context["request"].team
        name = attrs.get("model_name", getattr(self.instance, "model_name", None))
        quant = attrs.get("quantization", getattr(self.instance, "quantization", None))
        clash = ModelVariant.objects.filter(team=team, model_name=name, quantization=quant)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError({"quantization": f"{name} {quant} already exists in this team."})
        return attrs


class BenchmarkSerializer(serializers.ModelSerializer):
    class Meta:
        model = Benchmark
        fields = ["id", "name", "description", "scale_max", "higher_is_better"]

    def validate_name(self, value: str) -> str:
        team = self.context["request"].team
        clash = Benchmark.objects.filter(team=team, name__iexact=value.strip())
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError(f"A benchmark named {value!r} already exists in this team.")
        return value.strip()

    def validate_scale_max(self, value: float) -> float:
        if value <= 0:
            raise serializers.ValidationError("Must be greater than 0.")
        return value


class ScoreSerializer(serializers.ModelSerializer):
    variant = TeamScopedPrimaryKeyRelatedField(queryset=ModelVariant.objects.all())
    benchmark = TeamScopedPrimaryKeyRelatedField(queryset=Benchmark.objects.all())
    model_name = serializers.CharField(source="variant.model_name", read_only=True)
    quantization = serializers.CharField(source="variant.quantization", read_only=True)
    benchmark_name = serializers.CharField(source="benchmark.name", read_only=True)

    class Meta:
        model = Score
        fields = [
            "id",
            "variant",
            "model_name",
            "quantization",
            "benchmark",
            "benchmark_name",
            "value_pct",
            "stderr_pct",
            "n_shot",
            "source",
            "evaluated_at",
            "is_simulated",
            "origin",
            "ci_low_pct",
            "ci_high_pct",
            "n_items",
            "provenance",
            "updated_at",
        ]
        validators = []  # the unique (variant, benchmark, origin) check is validate()'s, naming the field
        # Measured scores (and their figures) are written by benchmark runs only; the API writes imported ones.
        read_only_fields = ["is_simulated", "origin", "ci_low_pct", "ci_high_pct", "n_items", "provenance",
                            "updated_at"]  # fmt: skip

    def validate(self, attrs):
        if self.instance is not None and self.instance.origin == Score.Origin.MEASURED:
            raise serializers.ValidationError(
                {"origin": "A measured score is written by its benchmark run; re-run the benchmark to change it."}
            )
        benchmark = attrs.get("benchmark", getattr(self.instance, "benchmark", None))
        variant = attrs.get("variant", getattr(self.instance, "variant", None))
        value = attrs.get("value_pct", getattr(self.instance, "value_pct", None))
        if benchmark is not None and value is not None and not 0 <= value <= benchmark.scale_max:
            raise serializers.ValidationError(
                {"value_pct": f"Must be within 0–{benchmark.scale_max:g} percent for {benchmark.name}."}
            )
        stderr = attrs.get("stderr_pct")
        if stderr is not None and stderr < 0:
            raise serializers.ValidationError({"stderr_pct": "Must not be negative."})
        clash = Score.objects.filter(variant=variant, benchmark=benchmark, origin=Score.Origin.IMPORTED)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if variant is not None and benchmark is not None and clash.exists():
            raise serializers.ValidationError({"benchmark": f"{variant} already has an imported {benchmark} score."})
        return attrs


class ScoreImportResultSerializer(serializers.Serializer):
    layout = serializers.CharField(help_text="long, wide or lm_eval_json")
    scale = serializers.CharField(help_text="How the file's values were read: fraction (×100) or percent.")
    rows = serializers.IntegerField()
    scores_created = serializers.IntegerField()
    scores_updated = serializers.IntegerField()
    variants_created = serializers.IntegerField()
    benchmarks_created = serializers.IntegerField()


class MeasuredCellSerializer(serializers.Serializer):
    ci_low_pct = serializers.FloatField(allow_null=True, help_text="Wilson 95% interval of the accuracy.")
    ci_high_pct = serializers.FloatField(allow_null=True)
    n_items = serializers.IntegerField(allow_null=True)
    run_id = serializers.IntegerField(allow_null=True)
    run_url = serializers.CharField(allow_null=True)


class LeaderboardRowSerializer(serializers.Serializer):
    variant_id = serializers.IntegerField()
    model_name = serializers.CharField()
    quantization = serializers.CharField()
    family = serializers.CharField()
    parameters_b = serializers.FloatField(allow_null=True)
    scores = serializers.DictField(child=serializers.FloatField(allow_null=True))
    average_pct = serializers.FloatField(
        allow_null=True, help_text="Mean over the higher-is-better benchmarks shown that the variant has."
    )
    coverage_count = serializers.IntegerField(help_text="How many of the averaged benchmarks the variant has.")
    coverage_total = serializers.IntegerField(help_text="How many higher-is-better benchmarks are shown.")
    complete = serializers.BooleanField(help_text="A score on every averaged benchmark; ranked before the rest.")
    benchmark_count = serializers.IntegerField(help_text="Benchmarks shown with a score (lower-is-better included).")
    simulated = serializers.BooleanField(help_text="The row includes simulated scores (generated demo data).")
    simulated_benchmarks = serializers.ListField(child=serializers.CharField(), help_text="Which scores are simulated.")
    origins = serializers.DictField(
        child=serializers.CharField(allow_null=True),
        help_text="Per benchmark: 'measured' (here, by a benchmark run; preferred over an imported score of the "
        "same benchmark), 'imported', or null where the variant has no score.",
    )
    measured = serializers.DictField(
        child=MeasuredCellSerializer(), help_text="The measured scores of the row: interval, items, run."
    )


class PairedDeltaSerializer(serializers.Serializer):
    n_items = serializers.IntegerField()
    points_lost = serializers.FloatField(help_text="Base − quantized accuracy over the same items, in points.")
    ci_low_pts = serializers.FloatField(help_text="Newcombe's paired 95% interval of points_lost (method 10).")
    ci_high_pts = serializers.FloatField()
    mcnemar_p = serializers.FloatField(help_text="McNemar's exact test (binomial test of the flipped items).")
    flipped_count = serializers.IntegerField()
    base_only = serializers.IntegerField(help_text="Items right with the base, wrong with the quantized variant.")
    quantized_only = serializers.IntegerField()
    agreement = serializers.FloatField(allow_null=True, help_text="Share of items with the same extracted answer.")
    flipped = serializers.ListField(child=serializers.IntegerField(), help_text="Indices of the flipped items.")
    item_url = serializers.CharField(allow_null=True, help_text="An item's page, with {index} to fill in.")
    suite = serializers.CharField()
    settings_differ = serializers.BooleanField(help_text="The runs' shots / temperature / max tokens differ.")
    settings_note = serializers.CharField(allow_blank=True)
    base_run_url = serializers.CharField(allow_null=True)
    quantized_run_url = serializers.CharField(allow_null=True)


class QuantizationDeltaSerializer(serializers.Serializer):
    base_pct = serializers.FloatField()
    quantized_pct = serializers.FloatField()
    points_lost = serializers.FloatField()
    base_origin = serializers.ChoiceField(choices=Score.Origin.choices)
    quantized_origin = serializers.ChoiceField(choices=Score.Origin.choices)
    paired = PairedDeltaSerializer(
        allow_null=True,
        help_text="Both variants measured here on the same suite: the comparison item by item; null otherwise "
        "(the unpaired difference above only).",
    )


class QuantizationRowSerializer(serializers.Serializer):
    variant_id = serializers.IntegerField()
    model_name = serializers.CharField()
    quantization = serializers.CharField()
    base_variant_id = serializers.IntegerField()
    base_quantization = serializers.CharField()
    deltas = serializers.DictField(
        child=QuantizationDeltaSerializer(), help_text="Per benchmark both variants have a score on."
    )
    mean_points_lost = serializers.FloatField(allow_null=True)
    benchmark_count = serializers.IntegerField()
    simulated = serializers.BooleanField(help_text="A delta uses a simulated score (of the variant or its base).")
    simulated_benchmarks = serializers.ListField(child=serializers.CharField(), help_text="Which deltas do.")
    paired_count = serializers.IntegerField(help_text="Deltas compared item by item (both measured, same suite).")
