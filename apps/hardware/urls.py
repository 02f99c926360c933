from django.urls import path

from apps.hardware import views
from apps.hardware.exports import FORMATS as EXPORT_FORMATS

app_name = "hardware"
urlpatterns = [
    path("", views.grid_page, name="grid"),
    path("runs/", views.run_list, name="runs"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
    path("runs/<int:pk>/samples.csv", views.run_samples_csv, name="run-samples-csv"),
    *[
        path(f"runs/<int:pk>/export.{fmt}", views.run_export_view, {"fmt": fmt}, name=f"run-export-{fmt}")
        for fmt in EXPORT_FORMATS
    ],
    path("runs/<int:pk>/delete/", views.run_delete, name="run-delete"),
    path("compare/", views.compare_page, name="compare"),
    path("compare/export.pdf", views.compare_export_pdf, name="compare-export-pdf"),
    path("predict/", views.predict_page, name="predict"),
    path("upload/", views.upload_page, name="upload"),
]
