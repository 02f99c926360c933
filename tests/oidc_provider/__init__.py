"""A tiny OpenID Connect provider (django-oauth-toolkit) that the single sign-on tests run in a second
process: `python -m tests.oidc_provider` (configuration in OIDC_PROVIDER_* environment variables)."""
