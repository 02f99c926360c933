"""PerformanceRun.is_simulated, backfilled: runs of the `sim` provider (load sweeps tagged them
"simulated") and generated demo runs (tool "llmbench-demo") are simulated."""

from django.db import migrations, models
from django.db.models import Q

DEMO_TOOL = "llmbench-demo"  # apps.hardware.demo.DEMO_TOOL, frozen here as migrations must be
SIM_PROVIDER = "sim"  # apps.providers Kind.SIM


def backfill(apps, schema_editor):
    run_model = apps.get_model("hardware", "PerformanceRun")
    runs = run_model.objects.using(schema_editor.connection.alias)
    runs.filter(Q(provider=SIM_PROVIDER) | Q(tool=DEMO_TOOL)).update(is_simulated=True)
    # JSON "contains" is not available on SQLite: read the tags of the remaining tagged runs.
    tagged = [
        pk
        for pk, tags in runs.filter(is_simulated=False).exclude(tags=[]).values_list("pk", "tags").iterator()
        if isinstance(tags, list) and "simulated" in tags
    ]
    for start in range(0, len(tagged), 1000):
        runs.filter(pk__in=tagged[start : start + 1000]).update(is_simulated=True)


class Migration(migrations.Migration):
    dependencies = [
        ("hardware", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="performancerun",
            name="is_simulated",
            field=models.BooleanField(
                db_index=True,
                default=False,
                help_text="From the built-in simulator or generated demo data, not measured.",
            ),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
