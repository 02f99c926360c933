"""One FilterSet for the run list page, the grid and the runs API."""

import django_filters

from apps.hardware.models import Deployment, PerformanceRun


class PerformanceRunFilter(django_filters.FilterSet):
    model = django_filters.CharFilter(field_name="variant__model_name", lookup_expr="icontains", label="Model")
    quantization = django_filters.CharFilter(field_name="variant__quantization", lookup_expr="iexact")
    variant = django_filters.NumberFilter(field_name="variant_id")
    hardware = django_filters.NumberFilter(field_name="hardware_id")
    engine = django_filters.ChoiceFilter(field_name="deployment__engine", choices=Deployment.Engine.choices)
    concurrency = django_filters.NumberFilter()
    request_rate = django_filters.NumberFilter(field_name="request_rate_rps", label="Request rate (req/s)")
    input_tokens = django_filters.NumberFilter(field_name="input_tokens_target", label="Input tokens")
    output_tokens = django_filters.NumberFilter(field_name="output_tokens_target", label="Output tokens")
    tool = django_filters.CharFilter(lookup_expr="iexact")

    class Meta:
        model = PerformanceRun
        fields = [
            "model", "quantization", "variant", "hardware", "engine", "concurrency", "request_rate", "input_tokens",
            "output_tokens", "tool",
        ]  # fmt: skip
