"""The schedule form (create from a run's page, edit): a name, a cron expression or an interval, a time zone, the
failure limit and the comparison's significance level."""

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from apps.automation.models import MAX_INTERVAL_MINUTES
from apps.automation.services import timing_clean


class ScheduleForm(forms.Form):
    name = forms.CharField(
        max_length=200, required=False, label="Name", help_text="Leave empty to name it after the run and timing."
    )
    interval_minutes = forms.IntegerField(
        required=False, min_value=1, max_value=MAX_INTERVAL_MINUTES, label="Every (minutes)",
        help_text="Repeat every this many minutes (1440: once a day). Or leave empty and give a cron expression.",
    )  # fmt: skip
    cron = forms.CharField(
        max_length=100, required=False, label="Or a cron expression",
        help_text="Minute, hour, day of the month, month, day of the week on the time zone's clock: “0 6 * * 1-5” "
        "is 06:00 on weekdays; @hourly, @daily, @weekly and @monthly work too.",
    )  # fmt: skip
    timezone = forms.CharField(
        max_length=64, initial="UTC", label="Time zone",
        help_text="The clock of the cron expression, e.g. Europe/Paris or America/New_York.",
    )  # fmt: skip
    max_failures = forms.IntegerField(
        min_value=1, max_value=100, label="Pause after this many failed runs in a row",
        help_text="The schedule pauses itself, says why and notifies the team.",
    )  # fmt: skip
    alpha = forms.FloatField(
        min_value=0.0001, max_value=0.5, initial=0.05, label="Significance level",
        help_text="A figure is called worse (a regression) or better when the test's p-value is below this.",
    )  # fmt: skip

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["max_failures"].initial = settings.SCHEDULE_MAX_FAILURES
        self.fields["timezone"].widget.attrs["list"] = "timezones"
        self.fields["cron"].widget.attrs |= {"placeholder": "0 6 * * 1-5", "spellcheck": "false"}

    def clean(self):
        data = super().clean()
        if any(name in self.errors for name in ("cron", "interval_minutes", "timezone")):
            return data
        try:
            timing = timing_clean(
                cron=data.get("cron", ""), interval_minutes=data.get("interval_minutes"),
                timezone_name=data.get("timezone", ""),
            )  # fmt: skip
        except ValidationError as exc:
            for name, messages in exc.message_dict.items():
                for message in messages:
                    self.add_error(name, message)
            return data
        data.update(timing)
        return data

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        return {
            "name": data.get("name", ""), "cron": data["cron"], "interval_minutes": data["interval_minutes"],
            "max_failures": data["max_failures"], "alpha": data["alpha"],
        }  # fmt: skip
