"""manage.py backup / restore end to end on the database the suite runs on (SQLite or PostgreSQL): back
up, drop everything, restore into the empty database, and every row comes back equal and every
provider API key still decrypts. Also: the refusals (a database with data, the other engine, a
damaged archive) and that no secret is ever printed or put on a command line."""

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.apps import apps as django_apps
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings

from apps.accounts.models import Team
from apps.experiments.models import Response
from apps.experiments.runner import run_experiment
from apps.experiments.services import experiment_create
from apps.hardware.models import PerformanceRun, RequestSample
from apps.providers.models import ProviderEndpoint
from apps.providers.services import endpoint_save
from llmbench import backup, crypto
from tests.hardware.helpers import stored_run

# Committed data: pg_dump and SQLite's backup API read the database from their own connections.
pytestmark = pytest.mark.django_db(transaction=True)

PLAINTEXT_KEYS = {
    "Local vLLM": "sk-local-0123456789abcdefghij",
    "Simulator": "sim-key-with-symbols-+/=_-~.9876",
}
OTHER_ENGINE = {"sqlite": "postgresql", "postgresql": "sqlite"}
postgresql_only = pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql", reason="pg_dump runs on PostgreSQL only"
)


@pytest.fixture
def site_data(team, member):
    """Performance runs with samples, an experiment with evaluated responses, endpoints with encrypted keys."""
    stored_run(team, name="run A")
    stored_run(team, name="run B", concurrency=32)
    vllm = endpoint_save(
        endpoint=ProviderEndpoint(
            team=team, name="Local vLLM", kind="openai_compatible", base_url="http://127.0.0.1:9/v1", model_names=["m"]
        ),
        api_key=PLAINTEXT_KEYS["Local vLLM"],
    )
    sim = endpoint_save(
        endpoint=ProviderEndpoint(
            team=team, name="Simulator", kind="sim", base_url="sim://t?max_batch=8&tokens_per_s=4000", model_names=["s"]
        ),
        api_key=PLAINTEXT_KEYS["Simulator"],
    )
    experiment = experiment_create(
        team=team, user=member, name="backup me", targets=[(sim, "sim-small")], prompt="Say hello in French.",
        parameters={"temperature": 0.7, "max_tokens": 20}, responses_per_item=3,
    )  # fmt: skip
    run_experiment(experiment.pk)
    return {"endpoints": [vllm, sim], "experiment": experiment}


def _value(value):
    return bytes(value) if isinstance(value, memoryview) else value  # BinaryField on PostgreSQL


def every_row() -> dict[str, list[dict]]:
    """Every row of every model's table, by primary key: what a restore must give back unchanged."""
    rows = {}
    for model in django_apps.get_models(include_auto_created=True):
        if model._meta.proxy or not model._meta.managed:
            continue
        rows[model._meta.db_table] = [
            {key: _value(value) for key, value in row.items()} for row in model._base_manager.order_by("pk").values()
        ]
    return rows


def drop_everything() -> None:
    """Lose the database: PostgreSQL drops its schema, SQLite loses its file."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    else:
        connection.close()
        name = Path(connection.settings_dict["NAME"])
        for path in (name, name.with_name(name.name + "-wal"), name.with_name(name.name + "-shm")):
            path.unlink(missing_ok=True)
    assert connection.introspection.table_names() == []


def run(command: str, *args, **options) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(command, *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def make_backup(tmp_path) -> tuple[Path, str]:
    archive = tmp_path / "site.zip"
    out, err = run("backup", output=archive)
    return archive, out + err


def test_backup_drop_restore_gives_back_every_row_and_every_key_decrypts(site_data, tmp_path):
    """The issue's round trip: every run, sample, response and key survives a backup, a drop and a restore."""
    before = every_row()
    assert PerformanceRun.objects.count() == 2 and RequestSample.objects.count() == 100
    assert Response.objects.filter(experiment=site_data["experiment"]).count() == 3
    archive, backup_output = make_backup(tmp_path)
    assert "LLMBENCH_ENCRYPTION_KEYS" in backup_output and "not in this backup" in backup_output

    drop_everything()
    out, err = run("restore", str(archive))

    assert every_row() == before
    for name, plaintext in PLAINTEXT_KEYS.items():
        assert ProviderEndpoint.objects.get(name=name).config().api_key == plaintext
    assert "All 2 provider API key(s) decrypt" in out and err == ""
    assert "hardware_requestsample" in out and "every table's count" in out
    for secret in PLAINTEXT_KEYS.values():
        assert secret not in backup_output + out + err


def test_the_archive_holds_a_manifest_and_never_the_encryption_keys(site_data, tmp_path, settings):
    """manifest.json names the engine, the migrations and every table's rows; the keys and SECRET_KEY are absent."""
    settings.LLMBENCH_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    crypto.reset_cache()
    try:
        endpoint_save(endpoint=ProviderEndpoint.objects.get(name="Local vLLM"), api_key=PLAINTEXT_KEYS["Local vLLM"])
        archive, _ = make_backup(tmp_path)
    finally:
        crypto.reset_cache()
    with zipfile.ZipFile(archive) as zipped:
        manifest = json.loads(zipped.read("manifest.json"))
        zipped.extract(manifest["database_file"], tmp_path)
    database = tmp_path / manifest["database_file"]
    if manifest["engine"] == "postgresql":  # the custom format compresses table data: search its SQL text
        everything = subprocess.run(["pg_restore", "--file=-", str(database)], capture_output=True, check=True).stdout
    else:
        everything = database.read_bytes()
    everything += json.dumps(manifest).encode()
    assert manifest["engine"] == connection.vendor and manifest["format_version"] == backup.FORMAT_VERSION
    assert manifest["row_counts"]["hardware_requestsample"] == 100 and manifest["encrypted_provider_keys"] == 2
    assert manifest["migrations"]["hardware"].startswith("00")
    encrypted = ProviderEndpoint.objects.get(name="Local vLLM").api_key_encrypted
    assert encrypted.encode() in everything  # the search sees stored values…
    for secret in [settings.LLMBENCH_ENCRYPTION_KEYS[0], settings.SECRET_KEY, PLAINTEXT_KEYS["Local vLLM"]]:
        assert secret.encode() not in everything  # …and these are not among them
    assert archive.stat().st_mode & 0o777 == 0o600


def test_restore_refuses_a_database_with_data_unless_forced(site_data, tmp_path):
    """Without --force nothing changes; with it, the database is exactly the backup again."""
    archive, _ = make_backup(tmp_path)
    before = every_row()
    PerformanceRun.objects.filter(name="run A").delete()
    Team.objects.create(name="Made after the backup", slug="later")
    changed = every_row()

    with pytest.raises(CommandError, match=r"already holds data.*--force"):
        run("restore", str(archive))
    assert every_row() == changed

    run("restore", str(archive), force=True)
    assert every_row() == before


@pytest.mark.django_db  # reads no data of its own: no need for a flush afterwards
def test_restore_refuses_a_backup_of_the_other_engine(db, tmp_path):
    """A PostgreSQL backup into SQLite (or the reverse) is refused by name before anything is touched."""
    other = OTHER_ENGINE[connection.vendor]
    member = backup.DATABASE_MEMBER[other]
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        manifest = {
            "format": backup.FORMAT, "format_version": 1, "engine": other, "created_at": "2026-01-01T00:00:00+00:00",
            "database_file": member, "database_sha256": "0" * 64, "row_counts": {"accounts_team": 1},
        }  # fmt: skip
        zipped.writestr("manifest.json", json.dumps(manifest))
        zipped.writestr(member, b"not used")
    names = backup.ENGINE_NAMES
    with pytest.raises(CommandError, match=f"backup of a {names[other]} database.*is {names[connection.vendor]}"):
        run("restore", str(archive), force=True)


def test_a_truncated_or_damaged_archive_is_refused_with_a_clear_error(site_data, tmp_path):
    """Truncation, a flipped byte in the dump and a foreign zip each get a message, never a traceback."""
    archive, _ = make_backup(tmp_path)
    data = archive.read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(data[: len(data) // 2])
    damaged = tmp_path / "damaged.zip"
    middle = len(data) // 2
    damaged.write_bytes(data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 16]) + data[middle + 16 :])
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as zipped:
        zipped.writestr("hello.txt", "hi")
    before = every_row()

    for path, reason in [(truncated, "truncated"), (damaged, "damaged"), (foreign, "no manifest.json")]:
        with pytest.raises(CommandError, match=f"not a readable llmbench backup.*{reason}"):
            run("restore", str(path), force=True)
    with pytest.raises(CommandError, match="does not exist"):
        run("restore", str(tmp_path / "missing.zip"))
    assert every_row() == before

    # As a real command: the message on stderr and exit status 1, no traceback.
    completed = subprocess.run(
        [sys.executable, "manage.py", "restore", str(truncated)],
        cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 1
    assert "CommandError: " in completed.stderr and "Traceback" not in completed.stderr


def test_restore_warns_when_the_keys_do_not_decrypt_and_fails_with_strict_keys(site_data, tmp_path, settings):
    """Restored under other encryption keys: a warning counts the unreadable keys; --strict-keys exits non-zero."""
    archive, _ = make_backup(tmp_path)
    settings.LLMBENCH_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    crypto.reset_cache()
    try:
        out, err = run("restore", str(archive), force=True)
        assert "2 of 2 provider API key(s) do not decrypt" in err and "LLMBENCH_ENCRYPTION_KEYS" in err
        with pytest.raises(CommandError, match="The data is restored, but 2 of 2"):
            run("restore", str(archive), force=True, strict_keys=True)
    finally:
        crypto.reset_cache()
    for secret in [*PLAINTEXT_KEYS.values(), settings.LLMBENCH_ENCRYPTION_KEYS[0]]:
        assert secret not in out + err


@pytest.mark.django_db  # reads no data of its own: no need for a flush afterwards
def test_backup_writes_a_dated_file_in_backup_dir_and_never_overwrites(db, tmp_path):
    """Without --output the archive goes to BACKUP_DIR under a dated name; an existing file is never replaced."""
    with override_settings(BACKUP_DIR=tmp_path / "backups"):
        run("backup")
    (written,) = (tmp_path / "backups").iterdir()
    assert written.name.startswith(f"llmbench-{connection.vendor}-") and written.suffix == ".zip"
    with pytest.raises(CommandError, match="already exists"):
        run("backup", output=written)
    out, _ = run("restore", str(written), check=True)
    assert "checksums match" in out


@postgresql_only
def test_pg_dump_gets_the_password_from_the_environment_only(site_data, tmp_path, monkeypatch):
    """The database password reaches pg_dump through PGPASSWORD, never its command line or the output."""
    password = "db-pass-never-printed-4711"  # the test server trusts local connections, so any password works
    monkeypatch.setitem(connection.settings_dict, "PASSWORD", password)
    calls = []
    real_run = subprocess.run

    def spy(argv, *args, **kwargs):
        calls.append((argv, kwargs.get("env") or {}))
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(backup.subprocess, "run", spy)
    archive, output = make_backup(tmp_path)
    drop_everything()
    out, err = run("restore", str(archive))
    pg_calls = [(argv, env) for argv, env in calls if "--version" not in argv]
    assert {Path(argv[0]).name for argv, _ in pg_calls} == {"pg_dump", "pg_restore"}
    for argv, env in pg_calls:
        assert password not in " ".join(argv) and env["PGPASSWORD"] == password
    assert password not in output + out + err


@postgresql_only
@pytest.mark.django_db  # reads no data of its own: no need for a flush afterwards
def test_a_pg_dump_older_than_the_server_is_named_in_the_error(db, tmp_path, monkeypatch):
    """pg_dump cannot dump a newer server: the error names both versions and the package to install."""
    monkeypatch.setattr(backup, "pg_tool_major", lambda path: 9)
    with pytest.raises(CommandError, match=r"pg_dump 9 is older than the PostgreSQL \d+ server.*postgresql-client-\d+"):
        run("backup", output=tmp_path / "b.zip")
    assert not list(tmp_path.iterdir())
