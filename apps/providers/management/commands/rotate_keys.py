"""manage.py rotate_keys: re-encrypt every stored provider key under the first key of
LLMBENCH_ENCRYPTION_KEYS (put the new key first, run this, then drop the old one)."""

from django.core.management.base import BaseCommand
from django.db import transaction

from apps.notifications.services import channel_secrets_rotate
from apps.providers.models import ProviderEndpoint
from llmbench import crypto


class Command(BaseCommand):
    help = "Re-encrypt every provider API key under the primary (first) encryption key."

    @transaction.atomic
    def handle(self, *args, **options):
        count = 0
        for endpoint in ProviderEndpoint.objects.exclude(api_key_encrypted="").select_for_update():
            endpoint.api_key_encrypted = crypto.rotate(endpoint.api_key_encrypted)
            endpoint.save(update_fields=["api_key_encrypted"])
            count += 1
        self.stdout.write(f"Re-encrypted {count} key(s) under the primary key.")
        self.stdout.write(f"Re-encrypted {channel_secrets_rotate()} webhook signing secret(s) under the primary key.")
