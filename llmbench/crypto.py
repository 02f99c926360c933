"""Authenticated encryption of secrets at rest (provider API keys), under a key list of its own.

LLMBENCH_ENCRYPTION_KEYS holds comma-separated Fernet keys (AES-128-CBC + HMAC-SHA256,
`cryptography`'s MultiFernet): the first encrypts, any of them decrypts, so a new key is put
first, `manage.py rotate_keys` re-encrypts every secret under it, and the old key is then dropped.
It is never SECRET_KEY. Without it, development uses a key generated once into
`.llmbench-dev-encryption-key` (with a warning); production refuses to start (settings.py).
"""

import logging
from functools import cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)


class DecryptionFailed(Exception):
    """A stored secret could not be decrypted with any configured key."""


def _dev_key(path: Path) -> str:
    if not path.exists():
        path.write_text(Fernet.generate_key().decode())
        path.chmod(0o600)
    logger.warning("LLMBENCH_ENCRYPTION_KEYS is not set: using the development key in %s.", path.name)
    return path.read_text().strip()


@cache
def _fernet() -> MultiFernet:
    keys = list(settings.LLMBENCH_ENCRYPTION_KEYS)
    if not keys:
        if settings.LLMBENCH_DEV_KEY_FILE is None:
            raise ImproperlyConfigured("LLMBENCH_ENCRYPTION_KEYS is required when DEBUG=false.")
        keys = [_dev_key(Path(settings.LLMBENCH_DEV_KEY_FILE))]
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except ValueError:
        raise ImproperlyConfigured(
            "LLMBENCH_ENCRYPTION_KEYS must be Fernet keys (32 url-safe base64 bytes), e.g. "
            "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'."
        ) from None


def encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise DecryptionFailed("The secret cannot be decrypted with the configured keys.") from None


def rotate(token: str) -> str:
    """The same secret encrypted under the first (primary) key."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise DecryptionFailed("The secret cannot be decrypted with the configured keys.") from None


def reset_cache() -> None:
    """Forget the key list (tests that change the setting)."""
    _fernet.cache_clear()
