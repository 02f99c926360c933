from django.urls import path

from apps.hardware import views

app_name = "hardware"
urlpatterns = [
    path("", views.grid_page, name="grid"),
    path("runs/", views.run_list, name="runs"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
    path("runs/<int:pk>/samples.csv", views.run_samples_csv, name="run-samples-csv"),
    path("runs/<int:pk>/delete/", views.run_delete, name="run-delete"),
    path("compare/", views.compare_page, name="compare"),
    path("predict/", views.predict_page, name="predict"),
    path("upload/", views.upload_page, name="upload"),
]
