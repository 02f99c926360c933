from django import forms

from apps.accounts.models import ApiToken
from apps.accounts.services import TOKEN_MAX_DAYS


class TokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the key is for, e.g. 'CI pipeline'.")
    expires_in_days = forms.IntegerField(
        label="Expires after (days)",
        required=False,
        min_value=1,
        max_value=TOKEN_MAX_DAYS,
        help_text="Empty: the key never expires.",
    )
    scope = forms.TypedChoiceField(
        label="Access",
        choices=ApiToken.Scope.choices,
        required=False,
        empty_value=ApiToken.Scope.FULL,
        initial=ApiToken.Scope.FULL,
        help_text="Read only: the key may look but not change anything.",
    )


class TeamSwitchForm(forms.Form):
    team = forms.IntegerField(min_value=1)
