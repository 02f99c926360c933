"""CI gate pages: /gates/, /gates/new/, /gates/<id>/, saved checks, and the llmbench-gate script download."""

from django.urls import path

from apps.gates import views

app_name = "gates"
urlpatterns = [
    path("", views.gate_list, name="list"),
    path("new/", views.gate_new, name="new"),
    path("<int:pk>/", views.gate_detail, name="detail"),
    path("checks/new/", views.check_edit, name="check-new"),
    path("checks/<int:pk>/", views.check_edit, name="check-edit"),
    path("checks/<int:pk>/delete/", views.check_remove, name="check-delete"),
    path("llmbench-gate", views.script_download, name="script"),
]
