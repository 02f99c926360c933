"""One FilterSet for the catalog page and the catalog API."""

import django_filters
from django.db.models import Q

from apps.scores.models import ModelVariant, Score


class ModelVariantFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    family = django_filters.CharFilter(lookup_expr="iexact")
    quantization = django_filters.CharFilter(lookup_expr="iexact")

    class Meta:
        model = ModelVariant
        fields = ["q", "family", "quantization"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(model_name__icontains=value) | Q(family__icontains=value))


class ScoreFilter(django_filters.FilterSet):
    variant = django_filters.NumberFilter(field_name="variant_id")
    benchmark = django_filters.CharFilter(field_name="benchmark__name", lookup_expr="iexact")
    model = django_filters.CharFilter(field_name="variant__model_name", lookup_expr="iexact")
    quantization = django_filters.CharFilter(field_name="variant__quantization", lookup_expr="iexact")
    is_simulated = django_filters.BooleanFilter()
    origin = django_filters.ChoiceFilter(choices=Score.Origin.choices)

    class Meta:
        model = Score
        fields = ["variant", "benchmark", "model", "quantization", "is_simulated", "origin"]
