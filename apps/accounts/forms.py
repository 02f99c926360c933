from django import forms


class TokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the key is for, e.g. 'CI pipeline'.")


class TeamSwitchForm(forms.Form):
    team = forms.IntegerField(min_value=1)
