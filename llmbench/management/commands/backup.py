"""manage.py backup: the whole database into one archive (pg_dump, or SQLite's online backup), safe
while the site runs. The encryption keys and the .env are never in it (llmbench/backup.py)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from llmbench.backup import NOT_INCLUDED, BackupError, backup_create


class Command(BaseCommand):
    # A restore starts from an empty or missing database, where checks that query it would fail first.
    requires_system_checks = []
    help = (
        "Back up the configured database into one zip archive (database + manifest.json). "
        "LLMBENCH_ENCRYPTION_KEYS and the .env are NOT included: keep them separately."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--output",
            type=Path,
            help="Archive to write (must not exist), or a directory for a dated name. "
            "Default: a dated name in BACKUP_DIR, or in the current directory.",
        )

    def handle(self, *args, output, **options):
        try:
            result = backup_create(output=output)
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        manifest = result.manifest
        rows = sum(manifest["row_counts"].values())
        self.stdout.write(
            f"Backed up the {manifest['engine']} database to {result.path} ({result.size_bytes / 1e6:.1f} MB): "
            f"{rows} rows in {len(manifest['row_counts'])} tables, "
            f"{manifest['encrypted_provider_keys']} encrypted provider API key(s)."
        )
        if options["verbosity"] > 1:
            for table, count in sorted(manifest["row_counts"].items()):
                self.stdout.write(f"  {table:<40} {count:>10}")
        self.stdout.write(self.style.WARNING(NOT_INCLUDED))
