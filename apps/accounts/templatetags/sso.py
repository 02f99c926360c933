"""{% sso_options as sso %}: what the sign-in pages offer (single sign-on button, password form)."""

from django import template

from apps.accounts import oidc

register = template.Library()


@register.simple_tag
def sso_options() -> dict:
    return oidc.sso_options()
