"""WSGI entry point (management tooling; the site itself is served over ASGI)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmbench.settings")
application = get_wsgi_application()
