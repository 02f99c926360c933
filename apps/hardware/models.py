"""Serving performance: hardware profiles, deployments, runs, per-request samples, summaries."""

from django.conf import settings
from django.db import models

from apps.accounts.models import TeamOwned
from apps.scores.models import ModelVariant


class HardwareProfile(TeamOwned):
    """The machine a model was served on, with what an hour of it costs."""

    name = models.CharField(max_length=100)
    accelerator = models.CharField(max_length=100, blank=True, help_text="e.g. NVIDIA H100 80GB SXM")
    accelerator_count = models.PositiveSmallIntegerField(default=1)
    memory_per_device_gb = models.FloatField(null=True, blank=True)
    interconnect = models.CharField(max_length=100, blank=True, help_text="NVLink, PCIe, InfiniBand …")
    cpu = models.CharField(max_length=100, blank=True)
    ram_gb = models.FloatField(null=True, blank=True)
    hourly_cost_usd = models.FloatField(null=True, blank=True, help_text="Cost of the whole machine per hour.")
    notes = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="hardware_unique_per_team")]

    def __str__(self) -> str:
        return self.name


class Deployment(TeamOwned):
    """How the model was served: engine, version, parallelism, batch and cache settings."""

    class Engine(models.TextChoices):
        VLLM = "vllm", "vLLM"
        SGLANG = "sglang", "SGLang"
        TGI = "tgi", "TGI"
        TRTLLM = "trtllm", "TensorRT-LLM"
        LLAMACPP = "llama.cpp", "llama.cpp"
        OLLAMA = "ollama", "Ollama"
        HOSTED = "hosted", "Hosted API"
        OTHER = "other", "Other"

    name = models.CharField(max_length=100)
    engine = models.CharField(max_length=20, choices=Engine.choices, default=Engine.VLLM)
    engine_version = models.CharField(max_length=50, blank=True)
    tensor_parallel = models.PositiveSmallIntegerField(default=1)
    pipeline_parallel = models.PositiveSmallIntegerField(default=1)
    max_batch_size = models.PositiveIntegerField(null=True, blank=True)
    kv_cache_dtype = models.CharField(max_length=20, blank=True)
    settings = models.JSONField(default=dict, blank=True, help_text="Other engine flags.")
    notes = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="deployment_unique_per_team")]

    def __str__(self) -> str:
        return self.name


class PerformanceRun(TeamOwned):
    """One benchmark run: model variant × hardware × deployment × workload."""

    variant = models.ForeignKey(ModelVariant, on_delete=models.PROTECT, related_name="performance_runs")
    hardware = models.ForeignKey(HardwareProfile, on_delete=models.PROTECT, null=True, blank=True, related_name="runs")
    deployment = models.ForeignKey(Deployment, on_delete=models.PROTECT, null=True, blank=True, related_name="runs")
    name = models.CharField(max_length=200, blank=True)
    concurrency = models.PositiveIntegerField(null=True, blank=True)
    request_rate_rps = models.FloatField(null=True, blank=True, help_text="Empty: closed loop.")
    input_tokens_target = models.PositiveIntegerField(null=True, blank=True)
    output_tokens_target = models.PositiveIntegerField(null=True, blank=True)
    dataset = models.CharField(max_length=200, blank=True)
    tool = models.CharField(max_length=50, blank=True)
    tool_version = models.CharField(max_length=50, blank=True)
    source_format = models.CharField(max_length=20, blank=True)
    source_filename = models.CharField(max_length=255, blank=True)
    provider = models.CharField(max_length=100, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True, help_text="Wall time the tool measured.")
    tags = models.JSONField(default=list, blank=True)
    notes = models.TextField(blank=True)
    is_simulated = models.BooleanField(
        default=False, db_index=True, help_text="From the built-in simulator or generated demo data, not measured."
    )
    slo_ttft_ms = models.FloatField(null=True, blank=True, help_text="Goodput SLO on TTFT.")
    slo_tpot_ms = models.FloatField(null=True, blank=True, help_text="Goodput SLO on TPOT.")
    slo_e2e_ms = models.FloatField(null=True, blank=True, help_text="Goodput SLO on end-to-end latency.")
    # What the run was measured with (issue 13); None for imported runs and runs from before workloads.
    workload_version = models.ForeignKey(
        "workloads.WorkloadVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="runs"
    )
    # How the request lengths were made: {"method": "tokenizer" | "probe" | "estimated" | "words", ...}.
    token_calibration = models.JSONField(null=True, blank=True)
    # Requested vs delivered lengths, computed when the run is stored (stats.length_report).
    length_report = models.JSONField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["team", "variant", "hardware"])]

    def __str__(self) -> str:
        return self.name or f"Run {self.pk}"

    @property
    def label(self) -> str:
        workload = f"c={self.concurrency}" if self.concurrency else ""
        if self.request_rate_rps:
            workload = f"{workload} {self.request_rate_rps:g} rps".strip()
        hardware = f" on {self.hardware}" if self.hardware_id else ""
        return f"{self.variant}{hardware} {workload}".strip()


class RequestSample(models.Model):
    """One request of a run. Failed requests keep their error and no latency enters statistics."""

    # No index of its own: the unique (run, index) constraint's index serves every look-up by run,
    # and a second index on the same column would cost each bulk insert of samples a quarter more.
    run = models.ForeignKey(PerformanceRun, on_delete=models.CASCADE, related_name="samples", db_index=False)
    index = models.PositiveIntegerField()
    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.TextField(blank=True)
    ttft_ms = models.FloatField(null=True, blank=True)
    e2e_ms = models.FloatField(null=True, blank=True)
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    mean_itl_ms = models.FloatField(null=True, blank=True)
    itl_ms = models.BinaryField(null=True, blank=True, help_text="Inter-token gaps, float64 little-endian.")
    start_offset_ms = models.FloatField(null=True, blank=True)
    # Workloads (issue 13); None when the tool or the workload does not say (apps.providers.samples.ParsedSample).
    session_index = models.IntegerField(null=True, blank=True)
    turn_index = models.SmallIntegerField(null=True, blank=True)
    requested_input_tokens = models.IntegerField(null=True, blank=True)
    requested_output_tokens = models.IntegerField(null=True, blank=True)
    cached_tokens = models.IntegerField(null=True, blank=True, help_text="None: the server did not report it.")
    reasoning_tokens = models.IntegerField(null=True, blank=True)
    ttfot_ms = models.FloatField(null=True, blank=True, help_text="Time to the first output (non-reasoning) token.")
    phase = models.SmallIntegerField(null=True, blank=True, help_text="0 steady, 1 warm-up, 2 ramp-up, 3 drain.")

    class Meta:
        ordering = ["run", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="sample_unique_run_index")]

    def __str__(self) -> str:
        return f"{self.run_id}#{self.index}"

    @property
    def ok(self) -> bool:
        return not self.error_code


class RunSummary(models.Model):
    """The stored statistics of a run, computed with numpy when it is stored (or on demand)."""

    class Source(models.TextChoices):
        SAMPLES = "samples", "computed from the samples"
        REPORTED = "reported", "as reported by the tool (no samples)"

    run = models.OneToOneField(PerformanceRun, on_delete=models.CASCADE, related_name="summary")
    source = models.CharField(max_length=10, choices=Source.choices)
    request_count = models.PositiveIntegerField(null=True)
    error_count = models.PositiveIntegerField(null=True)
    errors_by_code = models.JSONField(default=dict)
    # {"ttft_ms": {"count", "mean", "stdev", "min", "p50", "p90", "p95", "p99", "max"}, "itl_ms": …,
    #  "tpot_ms": …, "e2e_ms": …, "output_tps": …, "input_tokens": …, "output_tokens": …}
    metrics = models.JSONField(default=dict)
    itl_source = models.CharField(max_length=20, blank=True, help_text="pooled gaps | request means")
    duration_s = models.FloatField(null=True)
    request_throughput_rps = models.FloatField(null=True)
    output_token_throughput_tps = models.FloatField(null=True)
    total_token_throughput_tps = models.FloatField(null=True)
    goodput_rps = models.FloatField(null=True)
    goodput_slo = models.JSONField(default=dict)
    computed_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Summary of {self.run_id}"

    @property
    def error_rate(self) -> float | None:
        if not self.request_count:
            return None
        return (self.error_count or 0) / self.request_count

    def stat(self, metric: str, key: str) -> float | None:
        return (self.metrics.get(metric) or {}).get(key)


class ServerMetrics(models.Model):
    """What the server said about itself while a run was measured: its Prometheus metrics (and a DCGM
    exporter's), scraped every second (apps.providers.engine.scrape), reduced in apps.hardware.server_metrics."""

    run = models.OneToOneField(PerformanceRun, on_delete=models.CASCADE, related_name="server_metrics")
    # {"t_s": [seconds since the run's start], "metrics": {"running": [...], "waiting": [...], "kv_cache_usage": [...],
    #  "gpu_power_w": [...], ...}} — None where a scrape failed or the server does not expose the metric.
    series = models.JSONField(default=dict)
    # Reductions over the run: means and maxima, server TTFT from its histogram, energy, tokens per joule,
    # and the client/server TTFT disagreement ({"ttft_disagreement": {"client_ms", "server_ms", "ratio", "flagged"}}).
    summary = models.JSONField(default=dict)
    sources = models.JSONField(default=dict, help_text="Which URLs were scraped, the engine recognised, errors.")

    class Meta:
        verbose_name_plural = "server metrics"

    def __str__(self) -> str:
        return f"Server metrics of {self.run_id}"
