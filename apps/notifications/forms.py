"""Forms of the notification pages: a member's choices and a team's channel."""

from django import forms

from apps.notifications.events import EVENTS
from apps.notifications.models import Channel
from apps.notifications.services import channel_errors

EVENT_CHOICES = list(EVENTS.items())


class PreferenceForm(forms.Form):
    events = forms.MultipleChoiceField(
        choices=EVENT_CHOICES, required=False, widget=forms.CheckboxSelectMultiple, label="E-mail me when"
    )


class ChannelForm(forms.Form):
    """A channel's settings; the kind is chosen once (at creation)."""

    name = forms.CharField(max_length=100, label="Name")
    kind = forms.ChoiceField(choices=Channel.Kind.choices, widget=forms.RadioSelect, label="Kind")
    url = forms.CharField(
        max_length=500, required=False, label="Webhook address",
        help_text="e.g. a Slack or Teams incoming webhook, or a receiver of your own (https://…).",
    )  # fmt: skip
    format = forms.ChoiceField(
        choices=Channel.Format.choices, required=False, initial=Channel.Format.GENERIC, label="Message format"
    )
    email = forms.EmailField(required=False, label="E-mail address", help_text="e.g. a team list.")
    events = forms.MultipleChoiceField(
        choices=EVENT_CHOICES, required=False, widget=forms.CheckboxSelectMultiple, label="Send these events"
    )
    active = forms.BooleanField(required=False, initial=True, label="Switched on")

    def __init__(self, *args, team, instance: Channel | None = None, **kwargs):
        if instance is not None and not kwargs.get("initial"):
            kwargs["initial"] = {"name": instance.name, "kind": instance.kind, "url": instance.url,
                                 "format": instance.format or Channel.Format.GENERIC, "email": instance.email,
                                 "events": instance.events, "active": instance.active}  # fmt: skip
        super().__init__(*args, **kwargs)
        self.team, self.instance = team, instance
        if instance is not None:
            self.fields["kind"].disabled = True

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        clash = Channel.objects.filter(team=self.team, name=name)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise forms.ValidationError("A channel with this name already exists in the team.")
        return name

    def clean(self):
        data = super().clean()
        if "kind" not in data:
            return data
        errors = channel_errors(
            kind=data["kind"], url=(data.get("url") or "").strip(), email=data.get("email") or "",
            fmt=data.get("format") or Channel.Format.GENERIC, events=data.get("events") or [],
        )  # fmt: skip
        for field, message in errors.items():
            if field not in self.errors:
                self.add_error(field, message)
        return data

    def service_fields(self) -> dict:
        data = self.cleaned_data
        return {"name": data["name"], "url": (data.get("url") or "").strip(), "email": data.get("email") or "",
                "fmt": data.get("format") or Channel.Format.GENERIC, "events": list(data.get("events") or []),
                "active": data.get("active", False)}  # fmt: skip
