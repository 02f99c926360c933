"""One FilterSet for the audit page, its CSV download and the audit API."""

import django_filters
from django import forms

from apps.audit.catalog import ACTIONS, OBJECT_TYPES
from apps.audit.models import AuditEntry


class AuditFilterForm(forms.Form):
    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "The end of the date range is before its start.")
        return data


class AuditEntryFilter(django_filters.FilterSet):
    action = django_filters.ChoiceFilter(choices=sorted(ACTIONS.items(), key=lambda item: item[1]), label="Action")
    actor = django_filters.CharFilter(field_name="actor_label", lookup_expr="icontains", label="Who")
    object_type = django_filters.ChoiceFilter(
        choices=sorted(OBJECT_TYPES.items(), key=lambda item: item[1]), label="Object type"
    )
    via = django_filters.ChoiceFilter(choices=AuditEntry.Via.choices, label="Through")
    since = django_filters.DateFilter(
        field_name="at",
        lookup_expr="date__gte",
        label="From (date, UTC)",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    until = django_filters.DateFilter(
        field_name="at", lookup_expr="date__lte", label="To (date, UTC)", widget=forms.DateInput(attrs={"type": "date"})
    )

    class Meta:
        model = AuditEntry
        fields = ["action", "actor", "object_type", "via", "since", "until"]
        form = AuditFilterForm
