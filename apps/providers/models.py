"""Provider endpoints: where requests go, with an API key encrypted at rest and never shown."""

from django.db import models

from apps.accounts.models import TeamOwned
from apps.providers.engine.types import EndpointConfig, Kind
from llmbench import crypto

KIND_LABELS = {
    Kind.OPENAI: "OpenAI",
    Kind.OPENAI_COMPATIBLE: "OpenAI-compatible (vLLM, SGLang, TGI …)",
    Kind.ANTHROPIC: "Anthropic",
    Kind.GEMINI: "Gemini",
    Kind.SIM: "Simulator (offline)",
}


class ProviderEndpoint(TeamOwned):
    """An API endpoint of a team: kind, base URL, write-only key, limits, prices, timeouts."""

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=[(k.value, k.value) for k in Kind])
    # A CharField, not a URLField: the simulator takes `sim://` URLs carrying its profile. An http(s) URL is
    # checked by urlcheck.check_base_url, a sim URL by SimProfile.from_url (forms, API and services).
    base_url = models.CharField(
        max_length=500,
        blank=True,
        help_text="e.g. http://10.0.0.5:8000/v1. For the simulator: empty, or sim://name?max_batch=8&tokens_per_s=400",
    )
    api_key_encrypted = models.TextField(blank=True, editable=False)
    api_key_last4 = models.CharField(max_length=4, blank=True, editable=False)
    model_names = models.JSONField(default=list, blank=True, help_text="Model names served here.")
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveIntegerField(null=True, blank=True)
    max_concurrency = models.PositiveIntegerField(null=True, blank=True)
    price_input_per_1m_usd = models.FloatField(null=True, blank=True)
    price_output_per_1m_usd = models.FloatField(null=True, blank=True)
    connect_timeout_s = models.FloatField(default=10.0)
    read_timeout_s = models.FloatField(default=60.0, help_text="Longest silence between two chunks.")
    total_timeout_s = models.FloatField(default=600.0)
    # Server-side metrics (issue 14), scraped every second during load steps when set.
    metrics_url = models.CharField(
        max_length=500, blank=True,
        help_text="The server's Prometheus metrics, e.g. http://10.0.0.5:8000/metrics (vLLM, SGLang, TGI).",
    )  # fmt: skip
    gpu_metrics_url = models.CharField(
        max_length=500, blank=True, help_text="A DCGM exporter's metrics, e.g. http://10.0.0.5:9400/metrics."
    )
    last_test_at = models.DateTimeField(null=True, blank=True)
    last_test_ok = models.BooleanField(null=True)
    last_test_message = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="endpoint_unique_per_team")]

    def __str__(self) -> str:
        return self.name

    @property
    def kind_label(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind)

    @property
    def is_simulated(self) -> bool:
        return self.kind == Kind.SIM

    @property
    def key_hint(self) -> str:
        return f"…{self.api_key_last4}" if self.api_key_last4 else ""

    def set_api_key(self, key: str) -> None:
        """Store `key` encrypted; only its last 4 characters stay readable."""
        key = key.strip()
        self.api_key_encrypted = crypto.encrypt(key) if key else ""
        self.api_key_last4 = key[-4:] if key else ""

    def config(self) -> EndpointConfig:
        """The in-memory configuration adapters use, with the decrypted key (never stored or logged)."""
        return EndpointConfig(
            kind=Kind(self.kind),
            base_url=self.base_url.rstrip("/"),
            api_key=crypto.decrypt(self.api_key_encrypted) if self.api_key_encrypted else "",
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
            total_timeout_s=self.total_timeout_s,
            name=self.name,
        )


class RateBucket(models.Model):
    """The database token bucket of an endpoint (when no Redis is configured): shared by every
    worker through row locks."""

    endpoint = models.ForeignKey(ProviderEndpoint, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=10)  # "requests" | "tokens"
    level = models.FloatField()
    updated = models.FloatField(help_text="time.time() of the last refill")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["endpoint", "kind"], name="rate_bucket_unique")]

    def __str__(self) -> str:
        return f"{self.endpoint_id} {self.kind}: {self.level:.1f}"
