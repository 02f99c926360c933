"""llmbench settings: one module, read from the environment (every variable is in the README)."""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONCE, NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

from llmbench.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", True)

_DEV_SECRET_KEY = "django-insecure-llmbench-development-only-never-use-in-production"
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. With DEBUG=false llmbench needs a long random SECRET_KEY in the "
            "environment, e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))'."
        )
    SECRET_KEY = _DEV_SECRET_KEY

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "llmbench.apps.LlmbenchAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "django_q",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "corsheaders",
    "django_guid",  # request ids: X-Request-ID, log records, API error bodies
    "template_partials",
    "mozilla_django_oidc",  # single sign-on (apps/accounts/oidc.py); inert until OIDC_ISSUER is set
    "axes",  # login lockout (LOGIN_FAILURE_LIMIT)
    "llmbench",
    "apps.accounts",
    "apps.audit",
    "apps.jobs",
    "apps.notifications",
    "apps.providers",
    "apps.scores",
    "apps.workloads",
    "apps.hardware",
    "apps.experiments",
    "apps.benchmarks",
    "apps.batches",
    "apps.capacity",
    "apps.analytics",
    "apps.automation",
    "apps.gates",
]

MIDDLEWARE = [
    "django_guid.middleware.guid_middleware",  # first: every later log line carries the request id
    "llmbench.logs.AccessLogMiddleware",  # one log line per request (LOG_FORMAT=json: a JSON object)
    "llmbench.metrics.PrometheusMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "apps.accounts.middleware.ActiveTeamMiddleware",
    # the request as audit context: actor, team, address, request id; records downloads (apps/audit)
    "apps.audit.middleware.AuditMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # last, as django-axes asks: turns a lockout raised while signing in into the lockout page
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "llmbench.urls"
WSGI_APPLICATION = "llmbench.wsgi.application"
ASGI_APPLICATION = "llmbench.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.accounts.context_processors.team",
            ],
        },
    },
]

# --- Database: SQLite file by default, PostgreSQL (psycopg 3) through DATABASE_URL ------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
# PostgreSQL: each process keeps a pool of at most DB_POOL_MAX_SIZE connections (ADR 0009). Under
# ASGI every request runs in a thread of its own, so persistent per-thread connections
# (CONN_MAX_AGE) grew with the number of requests in flight until PostgreSQL refused new clients.
# Size it so that web processes × DB_POOL_MAX_SIZE + worker processes stays below max_connections.
DB_POOL = env_bool("DB_POOL", True)
DB_POOL_MIN_SIZE = env_int("DB_POOL_MIN_SIZE", 1)
DB_POOL_MAX_SIZE = env_int("DB_POOL_MAX_SIZE", 4, minimum=1)
# A request waits this long for a free pooled connection, then fails (a 500) instead of queueing forever.
DB_POOL_TIMEOUT_S = env_int("DB_POOL_TIMEOUT_S", 10, minimum=1)
# Shown in pg_stat_activity.application_name, so the site's connections can be counted.
DB_APPLICATION_NAME = env_str("DB_APPLICATION_NAME", "llmbench")
# PostgreSQL plans the hot paths' statements once per connection (llmbench/db.py). Turn off behind a
# pooler that cannot keep prepared statements (PgBouncer in transaction mode before 1.21).
DB_PREPARED_STATEMENTS = env_bool("DB_PREPARED_STATEMENTS", True)
# Only without the pool (DB_POOL=false): seconds a connection outlives its request; 0 closes it at the end.
DB_CONN_MAX_AGE = env_int("DB_CONN_MAX_AGE", 0)
if DB_POOL_MIN_SIZE > DB_POOL_MAX_SIZE:
    raise ImproperlyConfigured(
        f"DB_POOL_MIN_SIZE={DB_POOL_MIN_SIZE} is larger than DB_POOL_MAX_SIZE={DB_POOL_MAX_SIZE}."
    )
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=DB_CONN_MAX_AGE)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker share the file: WAL lets readers run beside one writer, and
    # IMMEDIATE transactions make a writer wait for the lock instead of failing half-way.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests use a file too (not SQLite's shared in-memory database): worker threads and the
    # worker processes of the crash test write beside the test itself, which needs WAL's locking.
    DATABASES["default"]["TEST"] = {"NAME": env_str("SQLITE_TEST_NAME", str(BASE_DIR / ".test-db.sqlite3"))}
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["application_name"] = DB_APPLICATION_NAME
    if DB_PREPARED_STATEMENTS:
        # Only the hot paths' hand-built statements use server-side binding and get prepared
        # (llmbench/db.py); Django's client-side binding never prepares the ORM's.
        DATABASES["default"]["OPTIONS"]["prepare_threshold"] = 5
    if DB_POOL:
        if DB_CONN_MAX_AGE:
            raise ImproperlyConfigured(
                f"DB_CONN_MAX_AGE={DB_CONN_MAX_AGE} needs DB_POOL=false: pooled connections are returned to "
                "the pool after each request, never kept by it."
            )
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": DB_POOL_MIN_SIZE,
            "max_size": DB_POOL_MAX_SIZE,
            "timeout": DB_POOL_TIMEOUT_S,
        }
        # django-q2 forks its workers after using the database: a child must open its own pool, never
        # reuse the parent's connections.
        from llmbench.webtier import forget_pools_in_forked_children

        forget_pools_in_forked_children()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Web processes of `manage.py serve` (and the Docker image): one per CPU, since each process runs its
# Python on one core at a time. Each holds up to DB_POOL_MAX_SIZE connections (see above).
from llmbench.webtier import cpus_available  # noqa: E402  (kept beside the pool it is sized with)

WEB_CONCURRENCY = env_int("WEB_CONCURRENCY", cpus_available(), minimum=1)
# Each web process runs one request at a time, in arrival order; a request still running after this
# many milliseconds lets the next one start beside it. 0: every request starts at once (ADR 0009).
WEB_SLOW_REQUEST_MS = env_int("WEB_SLOW_REQUEST_MS", 50, minimum=0)

# --- Redis (optional): cache, channel layer and task broker -----------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "llmbench.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "llmbench"),
        }
    }
    # A consumer waits for its next message with a 5 s blocking pop; redis-py's own default read
    # timeout is also 5 s, so under load the read timed out first and the consumer died. The
    # socket may wait longer than the pop.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": 30}],
                "prefix": env_str("CACHE_KEY_PREFIX", "llmbench"),
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# django-q2: the ORM broker (guaranteed delivery) unless Redis is configured. `timeout` must stay
# below `retry`, or a long task is handed to a second worker while the first still runs it.
Q_CLUSTER = {
    "name": env_str("Q_CLUSTER_NAME", "llmbench"),
    "workers": env_int("Q_WORKERS", 2, minimum=1),
    "timeout": env_int("Q_TIMEOUT_S", 300, minimum=1),
    "retry": env_int("Q_RETRY_S", 360, minimum=2),
    "max_attempts": env_int("Q_MAX_ATTEMPTS", 3, minimum=1),
    "save_limit": 1000,
    "catch_up": False,
    "label": "Tasks",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
if Q_CLUSTER["timeout"] >= Q_CLUSTER["retry"]:
    raise ImproperlyConfigured("Q_TIMEOUT_S must be smaller than Q_RETRY_S.")
# A parameter sweep runs in chunks: each sends requests for this long, lets the ones in flight
# finish for at most as long again, stores everything, and queues the next chunk. Both halves
# must fit in the task time limit.
BATCH_CHUNK_S = env_int("BATCH_CHUNK_S", 60, minimum=1)
if Q_CLUSTER["timeout"] <= 2 * BATCH_CHUNK_S:
    raise ImproperlyConfigured(
        f"BATCH_CHUNK_S={BATCH_CHUNK_S} is too long for Q_TIMEOUT_S={Q_CLUSTER['timeout']}: "
        "a chunk needs less than half the task time limit."
    )
# The task cluster is stuck when tasks have waited this long and no worker took or finished one in
# that time: /ready says so (503, check "task_cluster") and `manage.py serve` restarts its worker.
TASK_CLUSTER_STALL_S = env_int("TASK_CLUSTER_STALL_S", 60, minimum=5)
# A running capacity search silent this long (no probe pulse, no heartbeat) lost its worker: a re-delivered task
# or the scheduled recovery picks it up at the probe that was lost.
CAPACITY_STALL_S = env_int("CAPACITY_STALL_S", 90, minimum=2)
# Directories a simulator endpoint's answer key (sim://…?answer_key=/path, docs/mockllm-known-answers.md) may be
# read from: a user may not point the server at any file it can read. The demo writes its keys to var/demo-answer-keys.
SIM_ANSWER_KEY_DIRS = env_list("SIM_ANSWER_KEY_DIRS", [str(BASE_DIR / "var")])

# --- Auth ---------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# --- Client address: the proxy in front of the site -----------------------------------------------
# How many reverse proxies sit in front of llmbench. 0: the connecting address is the client's (the
# header is ignored, since anyone can send it). N: the client is the Nth address from the right of
# CLIENT_IP_HEADER, which the last proxy sets. Login lockout, throttles and the audit trail all use it.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
CLIENT_IP_HEADER = env_str("CLIENT_IP_HEADER", "HTTP_X_FORWARDED_FOR")

# --- Single sign-on: OpenID Connect (mozilla-django-oidc; docs/sso.md) -----------------------------
# On when OIDC_ISSUER and OIDC_CLIENT_ID are set: the endpoints are read from the issuer's
# /.well-known/openid-configuration, once per process.
OIDC_ISSUER = env_str("OIDC_ISSUER").rstrip("/")
OIDC_CLIENT_ID = env_str("OIDC_CLIENT_ID")
OIDC_CLIENT_SECRET = env_str("OIDC_CLIENT_SECRET")
OIDC_SCOPES = env_str("OIDC_SCOPES", "openid email profile")
OIDC_SIGN_ALGO = env_str("OIDC_SIGN_ALGO", "RS256")
# What the sign-in button says.
OIDC_PROVIDER_NAME = env_str("OIDC_PROVIDER_NAME", "single sign-on")
# A user seen for the first time is created (false: only users who already exist, matched by e-mail).
OIDC_CREATE_USERS = env_bool("OIDC_CREATE_USERS", True)
# The claim listing the user's groups, and how groups map to teams: "group=team-slug:role;…". With a map,
# each sign-in sets the user's memberships of the mapped teams to what the groups say (removing the ones
# whose group is gone); teams not in the map are left alone.
OIDC_GROUPS_CLAIM = env_str("OIDC_GROUPS_CLAIM", "groups")
OIDC_GROUP_MAP = env_str("OIDC_GROUP_MAP")
OIDC_ENABLED = bool(OIDC_ISSUER and OIDC_CLIENT_ID)
# false: no sign-in with a password anywhere (site, admin, /api/v1/auth/login); SSO and API tokens only.
PASSWORD_LOGIN = env_bool("PASSWORD_LOGIN", True)
if not PASSWORD_LOGIN and not OIDC_ENABLED:
    raise ImproperlyConfigured("PASSWORD_LOGIN=false needs single sign-on: set OIDC_ISSUER and OIDC_CLIENT_ID.")
# POST /api/v1/auth/register creates an account (and a team of its own) only when this is true.
REGISTRATION_OPEN = env_bool("REGISTRATION_OPEN", False)
# Tokens made by /api/v1/auth/login expire after this many days unless the call asks for fewer (0: never).
API_LOGIN_TOKEN_DAYS = env_int("API_LOGIN_TOKEN_DAYS", 30)

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses locked-out users
    "apps.accounts.oidc.PasswordBackend",  # Django's password check, refused while PASSWORD_LOGIN is false
]
if OIDC_ENABLED:
    AUTHENTICATION_BACKENDS.append("apps.accounts.oidc.TeamOIDCBackend")
# mozilla-django-oidc's own names, filled from the ones above (apps/accounts/oidc.py resolves the endpoints).
OIDC_RP_CLIENT_ID = OIDC_CLIENT_ID
OIDC_RP_CLIENT_SECRET = OIDC_CLIENT_SECRET
OIDC_RP_SCOPES = OIDC_SCOPES
OIDC_RP_SIGN_ALGO = OIDC_SIGN_ALGO
OIDC_CREATE_USER = OIDC_CREATE_USERS
LOGIN_REDIRECT_URL_FAILURE = "/login/?sso=failed"

# --- Login lockout (django-axes) -------------------------------------------------------------------
# After LOGIN_FAILURE_LIMIT wrong passwords for one username, or from one address, signing in is
# refused for LOGIN_LOCKOUT_MINUTES (a team admin or `manage.py axes_reset` unlocks sooner).
AXES_ENABLED = env_bool("LOGIN_LOCKOUT", True)
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
LOGIN_LOCKOUT_MINUTES = env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_LOCKOUT_MINUTES)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one reaching the limit locks
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "llmbench.clientip.client_ip"
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

# --- API throttles (DRF; shared through the cache, so through Redis when REDIS_URL is set) ---------
# Rates are "<n>/<second|minute|hour|day>". A request over its rate gets 429 with Retry-After.
THROTTLE_ENABLED = env_bool("THROTTLE_ENABLED", True)
THROTTLE_RATES = {
    "token": env_str("THROTTLE_RATE_TOKEN", "1200/minute"),  # per API token
    "user": env_str("THROTTLE_RATE_USER", "600/minute"),  # per signed-in user (browser sessions)
    "anon": env_str("THROTTLE_RATE_ANON", "60/minute"),  # per address, calls without credentials
    "auth_failure": env_str("THROTTLE_RATE_AUTH_FAILURE", "30/minute"),  # per address, bad tokens or passwords
    "exports": env_str("THROTTLE_RATE_EXPORTS", "30/minute"),  # per token or user: exports and downloads
    "analytics": env_str("THROTTLE_RATE_ANALYTICS", "120/minute"),  # per token or user: analytics answers
    "run_start": env_str("THROTTLE_RATE_RUN_START", "30/minute"),  # per token or user: starting runs
}

# --- Internationalisation -----------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

# --- Static files: WhiteNoise serves them from the application process --------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
# In development WhiteNoise reads straight from the app and project static folders, so
# `make run` needs no collectstatic.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# Uploads: files up to this size are accepted by the import pages and API.
MAX_UPLOAD_MB = env_int("MAX_UPLOAD_MB", 50, minimum=1)
# Prompts (experiments, test cases, sweeps) longer than this many characters are refused.
PROMPT_MAX_CHARS = env_int("PROMPT_MAX_CHARS", 32_000, minimum=1)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_UPLOAD_MB * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Workloads (issue 13): uploaded datasets/traces and tokenizer.json files may be larger than other imports.
WORKLOAD_MAX_UPLOAD_MB = env_int("WORKLOAD_MAX_UPLOAD_MB", 512, minimum=1)
TOKENIZER_MAX_MB = env_int("TOKENIZER_MAX_MB", 64, minimum=1)
# tokenizers' Rust thread pool: off in forked workers (2 cores; avoids the fork warning and oversubscription).
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# --- REST framework -----------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["apps.accounts.permissions.TeamRolePermission"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "llmbench.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # JSON bodies: objects only, nesting limited by JSON_MAX_DEPTH (llmbench/parsers.py).
    "DEFAULT_PARSER_CLASSES": [
        "llmbench.parsers.JSONObjectParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # Every API error body carries the request id (llmbench/exceptions.py).
    "EXCEPTION_HANDLER": "llmbench.exceptions.api_exception_handler",
    # Per token, per user, per address; views name a costlier scope (llmbench/throttling.py, THROTTLE_RATES).
    "DEFAULT_THROTTLE_CLASSES": ["llmbench.throttling.ClientRateThrottle", "llmbench.throttling.ScopedCostThrottle"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "llmbench API",
    "DESCRIPTION": "Benchmark LLM serving performance and output quality. Authenticate with "
    "`Authorization: Token <key>` (or `Bearer <key>`); a token acts within its team.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        # pending → running → completed / failed / cancelled: sweeps and experiments alike
        "RunStatusEnum": "apps.batches.models.Status",
        "TestCaseStatusEnum": "apps.experiments.models.TestCase.Status",
        "NotificationChannelKindEnum": "apps.notifications.models.Channel.Kind",
        "NotificationChannelFormatEnum": "apps.notifications.models.Channel.Format",
        "WorkloadDatasetFormatEnum": "apps.workloads.models.WorkloadDataset.Format",
        "RunKindEnum": "apps.automation.models.RunKind",
        # a load sweep's and a capacity search's arrivals: the same values, worded apart
        "LoadSweepArrivalsEnum": "apps.batches.models.LoadSweep.Arrivals",
        "CapacityArrivalsEnum": "apps.capacity.models.CapacitySearch.Arrivals",
        "BenchmarkKindEnum": "apps.benchmarks.models.Kind",
        "BenchmarkRunStatusEnum": "apps.benchmarks.models.Status",
        "ScoreOriginEnum": "apps.scores.models.Score.Origin",
    },
}

# --- Provider secrets (see llmbench/crypto.py) ------------------------------------------------
LLMBENCH_ENCRYPTION_KEYS = env_list("LLMBENCH_ENCRYPTION_KEYS", [])
# Development only: without a key list, a key generated once into this file (with a warning).
LLMBENCH_DEV_KEY_FILE = BASE_DIR / ".llmbench-dev-encryption-key" if DEBUG and not LLMBENCH_ENCRYPTION_KEYS else None
if not DEBUG and not LLMBENCH_ENCRYPTION_KEYS:
    raise ImproperlyConfigured(
        "LLMBENCH_ENCRYPTION_KEYS is not set. With DEBUG=false llmbench needs its own key list for provider "
        "API keys: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'."
    )
# Base URLs of provider endpoints: private and loopback addresses are allowed, cloud metadata
# addresses never are; these optional lists (hosts, or networks in CIDR form) restrict further.
PROVIDER_URL_ALLOWLIST = env_list("PROVIDER_URL_ALLOWLIST", [])
PROVIDER_URL_DENYLIST = env_list("PROVIDER_URL_DENYLIST", [])

# --- CORS: API clients on other origins (off unless origins are listed) -------------------------
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", [])
CORS_URLS_REGEX = r"^/api/.*$"
CORS_ALLOW_CREDENTIALS = False  # tokens, not cookies, cross origin

# --- Operations ---------------------------------------------------------------------------------
# When set, /metrics asks for `Authorization: Bearer <METRICS_TOKEN>`.
METRICS_TOKEN = env_str("METRICS_TOKEN")
# `manage.py backup` writes its archives here unless given --output (empty: the current directory).
BACKUP_DIR = Path(env_str("BACKUP_DIR")) if env_str("BACKUP_DIR") else None

# --- Security: strict by default whenever DEBUG is off ------------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("SECURE_PROXY_SSL_HEADER", False) else None
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^health$", r"^ready$", r"^metrics$"]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Sessions are read on every page. With Redis they are read from the cache and written through to the
# database, which saves a query per page and loses none when the cache is flushed. Without Redis the
# cache is each process's own memory, where a logout or a team switch made in one web process would
# not reach the others: there sessions stay in the database only.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db" if REDIS_URL else "django.contrib.sessions.backends.db"

# --- Content Security Policy (django-csp; templates give inline code {{ request.csp_nonce }}) -----
# Scripts are strict: same-origin files, or inline code carrying this response's nonce; no inline
# event handlers, no eval (htmx runs with allowEval:false). 'self' in connect-src also admits ws:/wss:
# to this host (CSP Level 3: Chrome 71+, Firefox, Safari 16+), which the live pages' /ws/ sockets use.
# Style *attributes* are allowed ('unsafe-inline' in style-src-attr only): ECharts writes its tooltips
# as HTML with style attributes and the performance grid colours each cell with one. An injected
# style attribute can restyle the page but cannot run script, and autoescaping keeps user text out of
# attributes; <style> elements still need the nonce.
_CSP_DIRECTIVES = {
    "default-src": [SELF],
    "script-src": [SELF, NONCE],
    "style-src": [SELF, NONCE],
    "style-src-attr": [UNSAFE_INLINE],
    "img-src": [SELF, "data:"],
    "connect-src": [SELF],
    "object-src": [NONE],
    "base-uri": [SELF],
    "form-action": [SELF],
    "frame-ancestors": [NONE],
}
# Where browsers POST violation reports (any collector); none by default.
CSP_REPORT_URI = env_str("CSP_REPORT_URI")
if CSP_REPORT_URI:
    _CSP_DIRECTIVES["report-uri"] = CSP_REPORT_URI
# Report-only: browsers report violations but block nothing (for trying a policy change in production).
CSP_REPORT_ONLY = env_bool("CSP_REPORT_ONLY", False)
CONTENT_SECURITY_POLICY = None if CSP_REPORT_ONLY else {"DIRECTIVES": _CSP_DIRECTIVES}
CONTENT_SECURITY_POLICY_REPORT_ONLY = {"DIRECTIVES": _CSP_DIRECTIVES} if CSP_REPORT_ONLY else None

# --- API schema and docs (/api/schema/, /api/docs/): signed-in users or API tokens, unless public --
API_DOCS_PUBLIC = env_bool("API_DOCS_PUBLIC", False)

# --- Logging ------------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # WeasyPrint logs each step of every PDF at INFO.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "weasyprint": {"level": "WARNING"}},
}

# --- Input limits -------------------------------------------------------------------------------
# JSON from outside (API bodies, uploaded JSON/JSONL files, JSON typed into forms) may nest at most
# this many arrays/objects deep; deeper is a 400 naming this setting. Python's parser recurses per
# level and fails near 1,000, hence the ceiling.
JSON_MAX_DEPTH = env_int("JSON_MAX_DEPTH", 64, minimum=1)
if JSON_MAX_DEPTH > 500:
    raise ImproperlyConfigured(
        f"JSON_MAX_DEPTH={JSON_MAX_DEPTH} is too deep: at most 500 (Python's parser recurses per level)."
    )
# Parameter sweeps: responses per combination, and requests in flight at once.
SWEEP_MAX_RESPONSES_PER_COMBINATION = env_int("SWEEP_MAX_RESPONSES_PER_COMBINATION", 1000, minimum=1)
if (
    SWEEP_MAX_RESPONSES_PER_COMBINATION > 1000
):  # an experiment's own ceiling (experiments.models.MAX_RESPONSES_PER_ITEM)
    raise ImproperlyConfigured("SWEEP_MAX_RESPONSES_PER_COMBINATION may be at most 1000.")
SWEEP_MAX_CONCURRENCY = env_int("SWEEP_MAX_CONCURRENCY", 256, minimum=1)
# Load sweeps: steps per sweep, requests and seconds per step, concurrency and request rate of a step.
LOAD_MAX_STEPS = env_int("LOAD_MAX_STEPS", 20, minimum=1)
LOAD_STEP_MAX_REQUESTS = env_int("LOAD_STEP_MAX_REQUESTS", 100_000, minimum=1)
LOAD_STEP_MAX_DURATION_S = env_int("LOAD_STEP_MAX_DURATION_S", 3600, minimum=1)
LOAD_MAX_CONCURRENCY = env_int("LOAD_MAX_CONCURRENCY", 4096, minimum=1)
LOAD_MAX_RATE_RPS = env_int("LOAD_MAX_RATE_RPS", 10_000, minimum=1)

# --- Request ids (django-guid) --------------------------------------------------------------------
# Each request gets an id: a sane incoming X-Request-ID (a UUID, e.g. from the proxy) is kept, anything
# else is replaced by a new one. It is echoed in the X-Request-ID response header, put in every log
# line of the request and in every API error body ("request_id").
DJANGO_GUID = {"GUID_HEADER_NAME": "X-Request-ID", "VALIDATE_GUID": True, "RETURN_HEADER": True, "EXPOSE_HEADER": True}
LOGGING.setdefault("filters", {})["request_id"] = {"()": "llmbench.request_id.RequestIdLogFilter"}
LOGGING["handlers"]["console"].setdefault("filters", []).append("request_id")
LOGGING["formatters"]["plain"]["format"] = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s %(message)s"
# django-guid says at INFO, for every request, whether the header came in.
LOGGING["loggers"]["django_guid"] = {"level": "WARNING"}

# --- Log format: plain lines (default) or one JSON object per line (llmbench/logs.py) -------------
# json: every record is an object with time, level, logger, message, request_id; the per-request line
# (logger "llmbench.request") adds method, route, path, status, duration_ms, user, team and client_ip.
LOG_FORMAT = env_str("LOG_FORMAT", "plain").lower()
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: use plain or json.")
# One line per request at INFO (false: none; errors are logged either way).
LOG_REQUESTS = env_bool("LOG_REQUESTS", True)
LOGGING["formatters"]["json"] = {
    "()": "llmbench.logs.JsonFormatter",
    "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
}
LOGGING["handlers"]["console"]["formatter"] = LOG_FORMAT

# --- Tracing: OpenTelemetry (llmbench/telemetry.py) ------------------------------------------------
# On when OTEL_EXPORTER_OTLP_ENDPOINT is set (OTLP over HTTP, e.g. http://collector:4318); the SDK reads
# its other OTEL_* variables itself (OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER, OTEL_EXPORTER_OTLP_HEADERS…).
OTEL_EXPORTER_OTLP_ENDPOINT = env_str("OTEL_EXPORTER_OTLP_ENDPOINT")
OTEL_SERVICE_NAME = env_str("OTEL_SERVICE_NAME", "llmbench")

# --- Readiness of provider endpoints (/ready) ------------------------------------------------------
# off: /ready does not look at provider endpoints. report: it tries each endpoint (up to
# READY_PROVIDER_LIMIT, READY_PROVIDER_TIMEOUT_S each) and reports which are down, still answering 200.
# require: a provider down makes /ready fail (503).
READY_CHECK_PROVIDERS = env_str("READY_CHECK_PROVIDERS", "off").lower()
if READY_CHECK_PROVIDERS not in {"off", "report", "require"}:
    raise ImproperlyConfigured(f"READY_CHECK_PROVIDERS={READY_CHECK_PROVIDERS!r}: use off, report or require.")
READY_PROVIDER_TIMEOUT_S = env_int("READY_PROVIDER_TIMEOUT_S", 2, minimum=1)
READY_PROVIDER_LIMIT = env_int("READY_PROVIDER_LIMIT", 20, minimum=1)

# --- Automation (issue 17): fair queue, notifications, e-mail, schedules, budgets -----------------------
# Site address used in links of notifications and e-mails (no trailing slash), e.g. https://llmbench.example.com.
# While runs of a team are going (each result stored changes what the dashboard's cost, trend and regression
# tiles are computed from), the tiles computed within this many seconds stand; 0: recomputed on every change.
DASHBOARD_TILES_REFRESH_S = env_int("DASHBOARD_TILES_REFRESH_S", 5)
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")
# The fair queue (apps/jobs): at most this many tasks of one team run at once; the others wait their turn, teams
# taken in turn (the team with the fewest running, then the longest waiting, goes first).
JOBS_TEAM_MAX_RUNNING = env_int("JOBS_TEAM_MAX_RUNNING", 2, minimum=1)
# At most this many run tasks handed to the workers at once (default: the worker count), so a burst waits in the
# fair queue rather than in the broker's first-in-first-out list.
JOBS_MAX_RUNNING = env_int("JOBS_MAX_RUNNING", Q_CLUSTER["workers"], minimum=1)
# E-mail: Django's SMTP backend by default (any SMTP server; django-anymail's backends work the same way).
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT_S", 10, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "llmbench <llmbench@localhost>")
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL cannot both be on.")
# Notifications: a webhook call's time limit, and how often a failed delivery (webhook or e-mail) is tried in all;
# the waits between tries double from NOTIFY_RETRY_BASE_S.
NOTIFY_TIMEOUT_S = env_int("NOTIFY_TIMEOUT_S", 10, minimum=1)
NOTIFY_MAX_ATTEMPTS = env_int("NOTIFY_MAX_ATTEMPTS", 5, minimum=1)
NOTIFY_RETRY_BASE_S = env_int("NOTIFY_RETRY_BASE_S", 30, minimum=1)
# Webhooks to loopback, private and link-local addresses (an in-house receiver); cloud metadata addresses never.
NOTIFY_WEBHOOK_ALLOW_PRIVATE = env_bool("NOTIFY_WEBHOOK_ALLOW_PRIVATE", DEBUG)
# A run whose share of failed requests is over this is reported to its team (error_rate event), once per run;
# a running run from 20 requests on.
NOTIFY_ERROR_RATE_THRESHOLD = env_float("NOTIFY_ERROR_RATE_THRESHOLD", 0.05, minimum=0.0, maximum=1.0)
# A schedule whose runs fail this many times in a row pauses itself (per schedule, this is the default).
SCHEDULE_MAX_FAILURES = env_int("SCHEDULE_MAX_FAILURES", 3, minimum=1)
# A running run re-reads its team's metered spend this often (other runs of the team spend too).
BUDGET_REFRESH_S = env_int("BUDGET_REFRESH_S", 5, minimum=1)
