"""Backups of the whole database into one file, and their restore (`manage.py backup` / `restore`).

A backup is a zip archive of two members: `manifest.json` (format, engine, time, migration state,
row counts of every table, checksum of the database member) and the database itself, either
PostgreSQL's `pg_dump --format=custom` or a copy of the SQLite file taken with SQLite's online
backup API. Both are consistent snapshots taken while the site keeps running.

Never in a backup: LLMBENCH_ENCRYPTION_KEYS (the provider API keys inside are encrypted under them,
so without the keys they cannot be read), SECRET_KEY and the rest of the environment (.env). Nothing
is kept on disk besides the database: uploaded files are parsed into rows and not stored.
"""

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import tomllib
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import django
from django.apps import apps as django_apps
from django.conf import settings
from django.db import DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor

from llmbench import crypto

FORMAT = "llmbench-backup"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
DATABASE_MEMBER = {"postgresql": "database.pgdump", "sqlite": "database.sqlite3"}
ENGINE_NAMES = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}
NOT_INCLUDED = (
    "LLMBENCH_ENCRYPTION_KEYS, SECRET_KEY and the rest of the environment (.env) are not in this backup: "
    "keep them separately; without the encryption keys the provider API keys in it cannot be decrypted."
)
# Rows that `manage.py migrate` writes by itself: a database holding nothing else counts as empty.
MIGRATE_FILLED_TABLES = frozenset({"django_migrations", "django_content_type", "auth_permission", "django_q_schedule"})
# libpq environment variables for the connection options Django may pass; pg_dump and pg_restore
# read them, so nothing about the connection (least of all the password) is on their command line.
_LIBPQ_ENV = {
    "dbname": "PGDATABASE",
    "host": "PGHOST",
    "port": "PGPORT",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "passfile": "PGPASSFILE",
    "service": "PGSERVICE",
    "options": "PGOPTIONS",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "gssencmode": "PGGSSENCMODE",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
}
# Connection parameters Django adds for psycopg itself, not for libpq.
_PSYCOPG_ONLY = {"cursor_factory", "context", "prepare_threshold", "server_side_binding", "client_encoding"}
_CHUNK_BYTES = 1024 * 1024


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class BackupResult:
    """A written archive and its manifest."""

    path: Path
    size_bytes: int
    manifest: dict


@dataclass(frozen=True)
class KeyCheck:
    """How many stored provider API keys decrypt with the configured LLMBENCH_ENCRYPTION_KEYS."""

    total: int
    failed_endpoint_ids: list[int] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failed_endpoint_ids)


@dataclass(frozen=True)
class RestoreResult:
    """What a restore put back, checked against the archive's manifest."""

    manifest: dict
    row_counts: dict[str, int]
    keys: KeyCheck
    unapplied_migrations: int
    unknown_migrations: list[str]
    extra_tables: list[str]


# --- Shared helpers ------------------------------------------------------------------------------


def engine_of(using: str = "default") -> str:
    """ "postgresql" or "sqlite": the engines a backup supports."""
    vendor = connections[using].vendor
    if vendor not in DATABASE_MEMBER:
        raise BackupError(f"Backups support PostgreSQL and SQLite, not {vendor}.")
    return vendor


def llmbench_version() -> str:
    with open(Path(settings.BASE_DIR) / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["project"]["version"]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _latest_migrations(rows) -> dict[str, str]:
    latest: dict[str, str] = {}
    for app, name in rows:
        # Migration names start with their number, so the largest name is the newest one applied.
        latest[app] = max(latest.get(app, ""), name)
    return dict(sorted(latest.items()))


def provider_keys_check(*, using: str = "default") -> KeyCheck:
    """Try to decrypt every stored provider API key with the configured keys (the plaintext is dropped)."""
    # By name, not by import: the kit sits below the apps (pyproject.toml, import-linter).
    endpoint_model = django_apps.get_model("providers", "ProviderEndpoint")
    total, failed = 0, []
    rows = endpoint_model.objects.using(using).exclude(api_key_encrypted="").order_by("pk")
    for pk, token in rows.values_list("pk", "api_key_encrypted").iterator():
        total += 1
        try:
            crypto.decrypt(token)
        except crypto.DecryptionFailed:
            failed.append(pk)
    return KeyCheck(total=total, failed_endpoint_ids=failed)


def rows_beyond_migrate(*, using: str = "default") -> dict[str, int]:
    """Tables holding rows that `migrate` does not write by itself: what a restore would overwrite."""
    connection = connections[using]
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
        found = {}
        for table in tables:
            if table in MIGRATE_FILLED_TABLES or table.startswith("sqlite_"):
                continue
            cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)}")  # an introspected name
            count = cursor.fetchone()[0]
            if count:
                found[table] = count
    return found


# --- PostgreSQL: pg_dump / pg_restore ------------------------------------------------------------


def _libpq_params(using: str) -> dict:
    params = connections[using].get_connection_params()
    return {key: value for key, value in params.items() if key not in _PSYCOPG_ONLY and value not in (None, "")}


def _pg_env(using: str) -> dict[str, str]:
    """The environment for pg_dump / pg_restore: the connection of `using`, password included."""
    env = os.environ.copy()
    for key, value in _libpq_params(using).items():
        if key == "application_name":
            continue
        if key not in _LIBPQ_ENV:
            raise BackupError(
                f"The database option {key!r} cannot be passed to pg_dump/pg_restore (no libpq environment variable)."
            )
        env[_LIBPQ_ENV[key]] = str(value)
    env["PGAPPNAME"] = "llmbench-backup"
    return env


def _pg_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(
            f"{name} is not installed: install the PostgreSQL client tools of the server's major version "
            "(Debian: apt-get install postgresql-client)."
        )
    return path


def pg_tool_major(path: str) -> int:
    """The major version of pg_dump / pg_restore at `path`, from `--version`."""
    output = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"\)\s+(\d+)", output)
    if match is None:
        raise BackupError(f"Cannot read the version of {path} from {output.strip()!r}.")
    return int(match.group(1))


def _scrub(text: str, using: str) -> str:
    password = str(connections[using].settings_dict.get("PASSWORD") or "")
    return text.replace(password, "********") if password else text


def _run_pg_tool(argv: list[str], *, using: str, what: str) -> None:
    completed = subprocess.run(argv, env=_pg_env(using), capture_output=True, text=True)
    if completed.returncode != 0:
        detail = _scrub(completed.stderr.strip() or completed.stdout.strip(), using)
        raise BackupError(f"{what} failed (exit status {completed.returncode}): {detail}")


def _pg_dump(using: str, dump_path: Path) -> dict:
    """Dump with pg_dump inside one snapshot, counting rows in that same snapshot; returns the manifest part."""
    from psycopg import sql

    pg_dump = _pg_tool("pg_dump")
    dump_major = pg_tool_major(pg_dump)
    # A snapshot exported from a repeatable-read transaction: pg_dump and the row counts below see
    # exactly the same data although the site keeps writing.
    with _pg_connect(using) as conn:
        server_num = conn.info.server_version
        server_major = server_num // 10000
        if dump_major < server_major:
            raise BackupError(
                f"pg_dump {dump_major} is older than the PostgreSQL {server_major} server, and pg_dump cannot "
                f"dump a newer server: install the client tools of version {server_major} or later "
                f"(Debian: postgresql-client-{server_major}, from apt.postgresql.org)."
            )
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p') AND pg_table_is_visible(c.oid) "
                "AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY c.relname"
            )
        ]
        counts = {
            table: conn.execute(sql.SQL("SELECT COUNT(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
            for table in tables
        }
        migrations = []
        if "django_migrations" in tables:
            migrations = conn.execute("SELECT app, name FROM django_migrations").fetchall()
        _run_pg_tool(
            [pg_dump, "--no-password", "--format=custom", f"--snapshot={snapshot}", f"--file={dump_path}"],
            using=using,
            what="pg_dump",
        )
        conn.execute("COMMIT")
    server_version = f"{server_major}.{server_num % 10000}"
    return {
        "row_counts": counts,
        "migrations": _latest_migrations(migrations),
        "postgresql": {"server_version": server_version, "pg_dump_major": dump_major},
    }


def _pg_connect(using: str, *, autocommit: bool = True):
    """A connection of its own, outside the site's pool, whose timeout would hide the reason (a missing database)."""
    import psycopg

    params = _libpq_params(using)
    params.setdefault("connect_timeout", 10)
    try:
        return psycopg.connect(**params, autocommit=autocommit)
    except psycopg.OperationalError as exc:
        raise BackupError(
            f"Cannot connect to the configured PostgreSQL database: {_scrub(str(exc).strip(), using)}"
        ) from None


def _pg_restore(using: str, dump_path: Path, manifest: dict) -> None:
    pg_restore = _pg_tool("pg_restore")
    restore_major = pg_tool_major(pg_restore)
    dump_major = manifest.get("postgresql", {}).get("pg_dump_major", 0)
    if restore_major < dump_major:
        raise BackupError(
            f"This backup was written by pg_dump {dump_major}; pg_restore {restore_major} cannot read it: "
            f"install the client tools of version {dump_major} or later (Debian: postgresql-client-{dump_major})."
        )
    # Idle pooled or persistent connections hold no locks, but close ours so nothing waits on it.
    connections[using].close()
    dbname = connections[using].settings_dict["NAME"]
    # One transaction: a failure leaves the database exactly as it was. --no-owner and
    # --no-privileges make the configured user the owner, whatever roles the old server had.
    _run_pg_tool(
        [
            pg_restore,
            "--no-password",
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            "--exit-on-error",
            f"--dbname={dbname}",
            str(dump_path),
        ],
        using=using,
        what="pg_restore",
    )


# --- SQLite: the online backup API ---------------------------------------------------------------


def _sqlite_path(using: str) -> Path:
    name = str(connections[using].settings_dict["NAME"])
    if name == ":memory:" or name.startswith("file::memory:") or "mode=memory" in name:
        raise BackupError("The configured SQLite database is in memory; there is no file to back up or restore.")
    return Path(name)


def _sqlite_count_sql(table: str) -> str:
    return 'SELECT COUNT(*) FROM "{}"'.format(table.replace('"', '""'))


def _sqlite_snapshot(using: str, copy_path: Path) -> dict:
    """Copy the live SQLite file with the online backup API and read its counts from the copy."""
    source_path = _sqlite_path(using)
    if not source_path.exists():
        raise BackupError(f"The SQLite database {source_path} does not exist.")
    source = sqlite3.connect(source_path, timeout=20)
    target = sqlite3.connect(copy_path)
    try:
        # One step (pages=-1): one read transaction, so the copy is consistent; in WAL mode it does
        # not block the site's writers.
        source.backup(target)
        # The copy is one self-contained file (no -wal beside it).
        target.execute("PRAGMA journal_mode=DELETE")
        tables = [
            row[0]
            for row in target.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        counts = {table: target.execute(_sqlite_count_sql(table)).fetchone()[0] for table in tables}
        migrations = (
            target.execute("SELECT app, name FROM django_migrations").fetchall()
            if "django_migrations" in tables
            else []
        )
    finally:
        target.close()
        source.close()
    return {
        "row_counts": counts,
        "migrations": _latest_migrations(migrations),
        "sqlite": {"sqlite_version": sqlite3.sqlite_version},
    }


def _sqlite_restore(using: str, copy_path: Path) -> None:
    target_path = _sqlite_path(using)
    source = sqlite3.connect(copy_path)
    try:
        check = source.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            raise BackupError(f"The database in this backup is damaged (SQLite integrity check: {check}).")
        connections[using].close()
        target_path.parent.mkdir(parents=True, exist_ok=True)
        target = sqlite3.connect(target_path, timeout=20)
        try:
            # The backup API replaces every page of the target under its write lock, so other
            # connections never see a half-restored file.
            source.backup(target)
            target.execute("PRAGMA journal_mode=WAL")  # as settings.py's init_command sets it
        finally:
            target.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"The database in this backup cannot be restored: {exc}") from None
    finally:
        source.close()


# --- Archive -------------------------------------------------------------------------------------


def default_backup_path(engine: str) -> Path:
    directory = Path(settings.BACKUP_DIR) if getattr(settings, "BACKUP_DIR", None) else Path.cwd()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%SZ")
    return directory / f"llmbench-{engine}-{stamp}.zip"


def backup_create(*, output: Path | None = None, using: str = "default") -> BackupResult:
    """Write a backup archive of the database `using` to `output` (a new file; a directory gets a dated name)."""
    engine = engine_of(using)
    if output is None:
        output = default_backup_path(engine)
    elif output.is_dir():
        output = output / default_backup_path(engine).name
    if output.exists():
        raise BackupError(f"{output} already exists: choose another name, or move the old backup away.")
    output.parent.mkdir(parents=True, exist_ok=True)
    member = DATABASE_MEMBER[engine]
    partial = output.with_name(output.name + ".partial")
    with tempfile.TemporaryDirectory(prefix="llmbench-backup-", dir=output.parent) as scratch:
        database_path = Path(scratch) / member
        taken = _pg_dump(using, database_path) if engine == "postgresql" else _sqlite_snapshot(using, database_path)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "engine": engine,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "llmbench_version": llmbench_version(),
            "django_version": django.get_version(),
            "database_file": member,
            "database_sha256": _sha256(database_path),
            "database_size_bytes": database_path.stat().st_size,
            "encrypted_provider_keys": provider_keys_check(using=using).total,
            "not_included": NOT_INCLUDED,
            **taken,
        }
        # Only the owner may read it: it holds password hashes, token digests and encrypted keys.
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle, zipfile.ZipFile(handle, "w") as archive:
                archive.writestr(MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
                # A custom-format dump is compressed already; the SQLite file is not.
                compression = zipfile.ZIP_STORED if engine == "postgresql" else zipfile.ZIP_DEFLATED
                archive.write(database_path, member, compress_type=compression)
            # Renamed into place only once complete: a crash never leaves a truncated backup under the final name.
            os.replace(partial, output)
        finally:
            partial.unlink(missing_ok=True)
    return BackupResult(path=output, size_bytes=output.stat().st_size, manifest=manifest)


def _unreadable(path: Path, detail: str) -> BackupError:
    return BackupError(f"{path} is not a readable llmbench backup ({detail}).")


def archive_check(path: Path) -> dict:
    """The manifest of the archive at `path`, once its structure and checksums are verified."""
    if not path.is_file():
        raise BackupError(f"{path} does not exist or is not a file.")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()  # reads every member and checks its CRC
            if damaged is not None:
                raise _unreadable(path, f"member {damaged} is damaged")
            try:
                manifest = json.loads(archive.read(MANIFEST_NAME))
            except KeyError:
                raise _unreadable(path, f"no {MANIFEST_NAME}") from None
            names = set(archive.namelist())
    except zipfile.BadZipFile as exc:
        raise _unreadable(path, f"truncated, damaged or not a zip archive: {exc}") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise _unreadable(path, f"truncated or damaged: {exc}") from None
    except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _unreadable(path, f"its manifest is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _unreadable(path, f"its manifest is not an {FORMAT} manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BackupError(
            f"{path} is backup format {version!r}; this llmbench reads format {FORMAT_VERSION} and older."
        )
    engine = manifest.get("engine")
    if engine not in DATABASE_MEMBER or manifest.get("database_file") != DATABASE_MEMBER[engine]:
        raise _unreadable(path, f"unknown engine {engine!r} or database file")
    if manifest["database_file"] not in names:
        raise _unreadable(path, f"the database file {manifest['database_file']} is missing")
    if not isinstance(manifest.get("row_counts"), dict):
        raise _unreadable(path, "its manifest has no row counts")
    return manifest


def _extract_verified(path: Path, manifest: dict, destination: Path) -> None:
    digest = hashlib.sha256()
    with (
        zipfile.ZipFile(path) as archive,
        archive.open(manifest["database_file"]) as source,
        open(destination, "wb") as target,
    ):
        while chunk := source.read(_CHUNK_BYTES):
            digest.update(chunk)
            target.write(chunk)
    if digest.hexdigest() != manifest.get("database_sha256"):
        raise _unreadable(path, "the database file does not match the checksum in its manifest")


def _unapplied_and_unknown_migrations(using: str) -> tuple[int, list[str]]:
    executor = MigrationExecutor(connections[using])
    loader = executor.loader
    unapplied = len(executor.migration_plan(loader.graph.leaf_nodes()))
    unknown = sorted(
        f"{app}.{name}"
        for app, name in loader.applied_migrations
        if app in loader.migrated_apps and (app, name) not in loader.disk_migrations
    )
    return unapplied, unknown


def backup_restore(*, archive: Path, force: bool = False, using: str = "default") -> RestoreResult:
    """Replace the database `using` with the archive's, then check row counts and provider keys."""
    manifest = archive_check(archive)
    engine = engine_of(using)
    if manifest["engine"] != engine:
        raise BackupError(
            f"This is a backup of a {ENGINE_NAMES[manifest['engine']]} database, and the configured database "
            f"(DATABASE_URL) is {ENGINE_NAMES[engine]}: a backup restores only into the same engine. Point "
            f"DATABASE_URL at a {ENGINE_NAMES[manifest['engine']]} database, or move the data with "
            "`manage.py dumpdata` / `loaddata` instead."
        )
    if engine == "postgresql":
        _pg_connect(using).close()  # a clear error now if the database is missing
    if not force:
        try:
            existing = rows_beyond_migrate(using=using)
        except DatabaseError as exc:
            raise BackupError(f"Cannot read the configured database: {exc}".strip()) from None
        if existing:
            shown = ", ".join(f"{table} {count}" for table, count in sorted(existing.items())[:5])
            more = ", …" if len(existing) > 5 else ""
            raise BackupError(
                f"The configured database already holds data: {len(existing)} tables have rows ({shown}{more}). "
                "A restore replaces everything in it: run again with --force to overwrite it, or point "
                "DATABASE_URL at an empty database."
            )
    with tempfile.TemporaryDirectory(prefix="llmbench-restore-") as scratch:
        database_path = Path(scratch) / manifest["database_file"]
        _extract_verified(archive, manifest, database_path)
        if engine == "postgresql":
            _pg_restore(using, database_path, manifest)
        else:
            _sqlite_restore(using, database_path)
    connections[using].close()  # the next query sees the restored database afresh
    connection = connections[using]
    with connection.cursor() as cursor:
        present = set(connection.introspection.table_names(cursor))
        counts, differences = {}, []
        for table, expected in sorted(manifest["row_counts"].items()):
            if table not in present:
                differences.append(f"{table}: missing, expected {expected} rows")
                continue
            # Only names found in the database itself reach SQL, never the archive's own.
            cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)}")
            counts[table] = cursor.fetchone()[0]
            if counts[table] != expected:
                differences.append(f"{table}: {counts[table]} rows, expected {expected}")
    if differences:
        raise BackupError("The restore finished but does not match the backup's row counts: " + "; ".join(differences))
    extra = sorted(t for t in present - set(manifest["row_counts"]) if not t.startswith("sqlite_"))
    unapplied, unknown = _unapplied_and_unknown_migrations(using)
    return RestoreResult(
        manifest=manifest,
        row_counts=counts,
        keys=provider_keys_check(using=using),
        unapplied_migrations=unapplied,
        unknown_migrations=unknown,
        extra_tables=extra,
    )
