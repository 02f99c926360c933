"""manage.py restore: replace the configured database with a backup archive, then check every table's
row count against the manifest and that every provider API key decrypts (llmbench/backup.py)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from llmbench.backup import BackupError, archive_check, backup_restore


class Command(BaseCommand):
    # A restore starts from an empty or missing database, where checks that query it would fail first.
    requires_system_checks = []
    help = (
        "Restore a backup made by `manage.py backup` into the configured database (same engine). "
        "Refuses a database that holds data unless --force. Stop the web server and the worker first."
    )

    def add_arguments(self, parser):
        parser.add_argument("archive", type=Path, help="The backup archive (.zip).")
        parser.add_argument("--force", action="store_true", help="Overwrite a database that already holds data.")
        parser.add_argument(
            "--strict-keys",
            action="store_true",
            help="Exit with status 1 when a stored provider API key does not decrypt with LLMBENCH_ENCRYPTION_KEYS.",
        )
        parser.add_argument(
            "--check", action="store_true", help="Only verify the archive (checksums, manifest); change nothing."
        )

    def handle(self, *args, archive, force, strict_keys, check, **options):
        try:
            if check:
                manifest = archive_check(archive)
                self._describe(archive, manifest)
                self.stdout.write(self.style.SUCCESS("The archive is complete and its checksums match."))
                return
            result = backup_restore(archive=archive, force=force)
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        self._describe(archive, result.manifest)
        shown = {table: count for table, count in result.row_counts.items() if count}
        for table, count in sorted(shown.items()):
            self.stdout.write(f"  {table:<40} {count:>10}")
        self.stdout.write(
            self.style.SUCCESS(
                f"Restored {sum(shown.values())} rows; every table's count ({len(result.row_counts)} tables, "
                f"{len(result.row_counts) - len(shown)} empty) matches the backup."
            )
        )
        if result.unknown_migrations:
            self.stderr.write(
                self.style.WARNING(
                    "The backup was made by a newer llmbench: migrations unknown to this code: "
                    + ", ".join(result.unknown_migrations)
                    + ". Upgrade the code before starting the site."
                )
            )
        elif result.unapplied_migrations:
            self.stderr.write(
                self.style.WARNING(
                    f"The backup predates {result.unapplied_migrations} migration(s) of this code: "
                    "run `manage.py migrate` before starting the site."
                )
            )
        if result.extra_tables:
            self.stderr.write(
                self.style.WARNING(
                    "Tables not in the backup were left as they were: " + ", ".join(result.extra_tables) + "."
                )
            )
        keys = result.keys
        if keys.failed:
            ids = ", ".join(map(str, keys.failed_endpoint_ids[:20])) + (" …" if keys.failed > 20 else "")
            message = (
                f"{keys.failed} of {keys.total} provider API key(s) do not decrypt with the configured "
                f"LLMBENCH_ENCRYPTION_KEYS (endpoint ids {ids}). Backups never contain the keys: set "
                "LLMBENCH_ENCRYPTION_KEYS to the list the backed-up site used, or enter those API keys again."
            )
            if strict_keys:
                raise CommandError(f"The data is restored, but {message}")
            self.stderr.write(self.style.WARNING(message))
        elif keys.total == 0:
            self.stdout.write("No provider API keys are stored.")
        else:
            self.stdout.write(
                f"All {keys.total} provider API key(s) decrypt with the configured LLMBENCH_ENCRYPTION_KEYS."
            )

    def _describe(self, archive: Path, manifest: dict) -> None:
        self.stdout.write(
            f"{archive}: {manifest['engine']} backup of {manifest['created_at']} "
            f"(llmbench {manifest.get('llmbench_version', '?')}), "
            f"{sum(manifest['row_counts'].values())} rows in {len(manifest['row_counts'])} tables."
        )
