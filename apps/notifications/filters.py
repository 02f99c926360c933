"""One FilterSet for the deliveries page and the deliveries API."""

import django_filters
from django import forms

from apps.notifications.events import EVENTS, TEST, TEST_LABEL
from apps.notifications.models import Channel, Delivery


def _team_channels(request):
    if request is None:
        return Channel.objects.none()
    return Channel.objects.filter(team=request.team)


class DeliveryFilterForm(forms.Form):
    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "The end of the date range is before its start.")
        return data


class DeliveryFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Delivery.Status.choices, label="Status")
    event = django_filters.ChoiceFilter(
        field_name="event__event", choices=[*EVENTS.items(), (TEST, TEST_LABEL)], label="Event"
    )
    channel = django_filters.ModelChoiceFilter(queryset=_team_channels, label="Channel")
    since = django_filters.DateFilter(
        field_name="created_at", lookup_expr="date__gte", label="From (date, UTC)",
        widget=forms.DateInput(attrs={"type": "date"}),
    )  # fmt: skip
    until = django_filters.DateFilter(
        field_name="created_at", lookup_expr="date__lte", label="To (date, UTC)",
        widget=forms.DateInput(attrs={"type": "date"}),
    )  # fmt: skip

    class Meta:
        model = Delivery
        fields = ["status", "event", "channel", "since", "until"]
        form = DeliveryFilterForm
