"""One FilterSet for the gate list page and the list API."""

import django_filters

from apps.gates.models import Gate, Kind


class GateFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Gate.Status.choices, label="Status")
    kind = django_filters.ChoiceFilter(choices=Kind.choices, label="Run kind")
    check = django_filters.CharFilter(field_name="saved_check__name", label="Saved check", max_length=100)

    class Meta:
        model = Gate
        fields = ["status", "kind", "check"]
