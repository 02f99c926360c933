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
    tool = django_filters.CharFilter(lookup_expr="iexact")

    class Meta:
        model = PerformanceRun
        fields = ["model", "quantization", "variant", "hardware", "engine", "concurrency", "tool"]
