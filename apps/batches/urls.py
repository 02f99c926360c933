from django.urls import path

from apps.batches import views
from apps.batches.exports import FORMATS as EXPORT_FORMATS
from apps.batches.exports import SWEEP_FORMATS

app_name = "batches"
urlpatterns = [
    path("", views.sweep_list, name="sweeps"),
    path("new/", views.batch_new, name="batch-new"),
    path("new/estimate/", views.batch_estimate, name="batch-estimate"),
    path("<int:pk>/", views.batch_detail, name="batch"),
    path("<int:pk>/combinations/", views.batch_combinations, name="batch-combinations"),
    path("<int:pk>/analysis/", views.batch_analysis_page, name="batch-analysis"),
    *[
        path(f"<int:pk>/export.{fmt}", views.batch_export, {"fmt": fmt}, name=f"batch-export-{fmt}")
        for fmt in EXPORT_FORMATS
    ],
    *[
        path(f"<int:pk>/{action}/", views.batch_action, {"action": action}, name=f"batch-{action}")
        for action in ("start", "cancel", "delete")
    ],
    path("load/new/", views.sweep_new, name="sweep-new"),
    path("load/<int:pk>/", views.sweep_detail, name="sweep"),
    path("load/<int:pk>/start/", views.sweep_action, {"action": "start"}, name="sweep-start"),
    path("load/<int:pk>/cancel/", views.sweep_action, {"action": "cancel"}, name="sweep-cancel"),
    *[
        path(f"load/<int:pk>/export.{fmt}", views.sweep_export, {"fmt": fmt}, name=f"sweep-export-{fmt}")
        for fmt in SWEEP_FORMATS
    ],
]
