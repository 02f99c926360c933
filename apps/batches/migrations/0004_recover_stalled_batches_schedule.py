"""Every minute the worker queues again the parameter sweeps whose worker went silent."""

from django.db import migrations

NAME = "llmbench: pick up stalled parameter sweeps"


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=NAME,
        defaults={"func": "apps.batches.tasks.recover_stalled_batches", "schedule_type": "I", "minutes": 1, "repeats": -1},
    )


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("batches", "0003_batch")]
    operations = [migrations.RunPython(create, remove)]
