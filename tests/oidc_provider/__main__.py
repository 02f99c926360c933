"""Runs the test identity provider: migrates its SQLite file, creates the user and the application
described by the environment, then serves on 127.0.0.1:OIDC_PROVIDER_PORT until it is terminated.

Environment: OIDC_PROVIDER_DB, OIDC_PROVIDER_PORT, OIDC_PROVIDER_ISSUER, OIDC_PROVIDER_KEY_FILE (PEM),
OIDC_PROVIDER_CLIENT_ID, OIDC_PROVIDER_CLIENT_SECRET, OIDC_PROVIDER_REDIRECT_URI, OIDC_PROVIDER_USER
(JSON: username, password, email, first_name, last_name, groups), OIDC_PROVIDER_CONTROL_SECRET.
"""

import json
import os


def main() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.oidc_provider.settings"
    import django

    django.setup()

    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.core.servers.basehttp import run
    from django.core.wsgi import get_wsgi_application
    from oauth2_provider.models import get_application_model

    call_command("migrate", interactive=False, verbosity=0)
    spec = json.loads(os.environ["OIDC_PROVIDER_USER"])
    user = get_user_model().objects.create_user(
        spec["username"],
        email=spec["email"],
        password=spec["password"],
        first_name=spec.get("first_name", ""),
        last_name=spec.get("last_name", ""),
    )
    user.groups.set([Group.objects.get_or_create(name=name)[0] for name in spec.get("groups", [])])
    application_model = get_application_model()
    application_model.objects.create(
        name="llmbench tests",
        client_id=os.environ["OIDC_PROVIDER_CLIENT_ID"],
        client_secret=os.environ["OIDC_PROVIDER_CLIENT_SECRET"],  # hashed on save
        client_type=application_model.CLIENT_CONFIDENTIAL,
        authorization_grant_type=application_model.GRANT_AUTHORIZATION_CODE,
        redirect_uris=os.environ["OIDC_PROVIDER_REDIRECT_URI"],
        algorithm=application_model.RS256_ALGORITHM,
        skip_authorization=True,
    )
    run("127.0.0.1", int(os.environ["OIDC_PROVIDER_PORT"]), get_wsgi_application(), threading=True)


if __name__ == "__main__":
    main()
