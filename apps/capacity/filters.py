"""One FilterSet for the search list page and the list API."""

import django_filters

from apps.capacity.models import CapacitySearch, Status


class CapacitySearchFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Status.choices)
    endpoint = django_filters.NumberFilter(field_name="endpoint_id", label="Endpoint")

    class Meta:
        model = CapacitySearch
        fields = ["status", "endpoint"]
