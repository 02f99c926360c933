"""Every minute the worker marks lost jobs and dispatches the fair queue, so no job waits forever."""

from django.db import migrations

NAME = "llmbench: dispatch the fair queue"


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=NAME, defaults={"func": "apps.jobs.tasks.dispatch_tick", "schedule_type": "I", "minutes": 1, "repeats": -1}
    )
    apps.get_model("jobs", "DispatchLock").objects.get_or_create(pk=1)


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("jobs", "0001_queue"), ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more")]
    operations = [migrations.RunPython(create, remove)]
