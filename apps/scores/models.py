"""The model catalog (model variants) and quality benchmark scores attached to them."""

from django.db import models

from apps.accounts.models import TeamOwned

FULL_PRECISION = ("BF16", "FP16", "FP32")  # a quantized variant is compared with these, in order


def normalize_quantization(value: str) -> str:
    """Quantization labels are compared upper-case without surrounding spaces: 'q4_k_m' is 'Q4_K_M'."""
    return value.strip().upper()


class ModelVariant(TeamOwned):
    """A model as served: model name + quantization (scores attach here, not to hardware)."""

    model_name = models.CharField(max_length=200)
    quantization = models.CharField(max_length=32, help_text="FP16, BF16, FP8, AWQ, GPTQ, Q4_K_M …")
    family = models.CharField(max_length=100, blank=True)
    parameters_b = models.FloatField(null=True, blank=True, help_text="Parameter count, in billions.")
    url = models.URLField(blank=True, help_text="Model card or weights.")
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model_name", "quantization"]
        constraints = [
            models.UniqueConstraint(fields=["team", "model_name", "quantization"], name="variant_unique_per_team")
        ]

    def __str__(self) -> str:
        return f"{self.model_name} · {self.quantization}"

    @property
    def is_full_precision(self) -> bool:
        return self.quantization in FULL_PRECISION

    def save(self, *args, **kwargs):
        self.quantization = normalize_quantization(self.quantization)
        super().save(*args, **kwargs)


class Benchmark(TeamOwned):
    """A quality benchmark (MMLU, GSM8K …): its scale and which direction is better."""

    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    scale_max = models.FloatField(default=100.0, help_text="Best possible score; scores are stored in percent.")
    higher_is_better = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="benchmark_unique_per_team")]

    def __str__(self) -> str:
        return self.name


class Score(TeamOwned):
    """One benchmark result of one model variant, in percent (0–100): imported (measured elsewhere and
    uploaded) or measured here by a benchmark run (apps.benchmarks). A variant has at most one of each per
    benchmark; where both exist the measured one is shown and ranked."""

    class Origin(models.TextChoices):
        IMPORTED = "imported", "Imported"
        MEASURED = "measured", "Measured here"

    variant = models.ForeignKey(ModelVariant, on_delete=models.CASCADE, related_name="scores")
    benchmark = models.ForeignKey(Benchmark, on_delete=models.CASCADE, related_name="scores")
    value_pct = models.FloatField()
    stderr_pct = models.FloatField(null=True, blank=True)
    n_shot = models.PositiveSmallIntegerField(null=True, blank=True)
    source = models.CharField(max_length=200, blank=True, help_text="Where the number comes from.")
    evaluated_at = models.DateField(null=True, blank=True)
    is_simulated = models.BooleanField(
        default=False,
        db_index=True,
        help_text="Generated (demo data, the built-in simulator), not measured: left out of rankings unless asked for.",
    )
    origin = models.CharField(max_length=10, choices=Origin.choices, default=Origin.IMPORTED, db_index=True)
    # Measured scores only: the Wilson 95% interval, the items scored, where the number comes from, and
    # the per-item outcomes the quantization view pairs on (same suite, same items).
    ci_low_pct = models.FloatField(null=True, blank=True)
    ci_high_pct = models.FloatField(null=True, blank=True)
    n_items = models.PositiveIntegerField(null=True, blank=True)
    provenance = models.JSONField(
        default=dict, blank=True,
        help_text="Measured: run_id, target_id, suite {id, name, version, sha256}, endpoint, model, "
        "settings {shots, temperature, max_tokens}, finished_at.",
    )  # fmt: skip
    outcomes = models.BinaryField(
        null=True, blank=True, editable=False,
        help_text="Measured: numpy.packbits of correct (1) per test item, in suite item index order.",
    )  # fmt: skip
    answer_digests = models.BinaryField(
        null=True, blank=True, editable=False,
        help_text="Measured: little-endian uint32 per test item, zlib.crc32 of the extracted answer (0: none).",
    )  # fmt: skip
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["variant", "benchmark"]
        constraints = [
            models.UniqueConstraint(fields=["variant", "benchmark", "origin"], name="score_unique_variant_benchmark")
        ]
        indexes = [models.Index(fields=["team", "benchmark"])]

    def __str__(self) -> str:
        return f"{self.variant} {self.benchmark}: {self.value_pct:.2f}"


class ServedVariant(TeamOwned):
    """Which catalog variant (model + quantization) an endpoint serves under a model name: set when a
    benchmark run's targets are chosen, and offered again the next time."""

    endpoint = models.ForeignKey("providers.ProviderEndpoint", on_delete=models.CASCADE, related_name="+")
    model = models.CharField(max_length=200)
    variant = models.ForeignKey(ModelVariant, on_delete=models.CASCADE, related_name="served_by")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["endpoint", "model"]
        constraints = [models.UniqueConstraint(fields=["endpoint", "model"], name="servedvariant_unique_model")]

    def __str__(self) -> str:
        return f"{self.endpoint} · {self.model} → {self.variant}"
