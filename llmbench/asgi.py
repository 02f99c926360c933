"""ASGI entry point: Django over HTTP and the Channels websocket routes of every app."""

import gc
import os
import warnings

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmbench.settings")
# WhiteNoise serves static files with a synchronous file iterator, which Django's ASGI handler
# consumes in a thread and warns about on every file; that is expected here.
warnings.filterwarnings("ignore", message="StreamingHttpResponse must consume synchronous iterators")
django.setup(set_prefix=False)  # what get_asgi_application() does before building its handler

from llmbench.asgi_handler import SyncChainASGIHandler  # noqa: E402  (needs the app registry)

# Django's handler with one thread hop per request and reused request threads: about 1.5 ms of CPU
# less per request under uvicorn (llmbench/asgi_handler.py).
django_asgi_app = SyncChainASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs the app registry)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from llmbench.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# What start-up built (Django, numpy, scipy, URL maps) lives as long as the process. Freezing it
# keeps the cyclic GC from rescanning it on every full collection: without this, about a third
# of large API responses paid a 50-100 ms collection pause (measured by bench/run.py).
gc.collect()
gc.freeze()
