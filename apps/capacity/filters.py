"""One FilterSet for the search list page and the list API."""

import django_filters
from django import forms

from apps.capacity.models import CapacitySearch, Status

MAX_ID = 2**63 - 1  # the largest primary key either database holds; a larger number is a 400, not an overflow


class IdFilter(django_filters.NumberFilter):
    field_class = forms.IntegerField


class CapacitySearchFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Status.choices)
    endpoint = IdFilter(field_name="endpoint_id", label="Endpoint", min_value=1, max_value=MAX_ID)

    class Meta:
        model = CapacitySearch
        fields = ["status", "endpoint"]
