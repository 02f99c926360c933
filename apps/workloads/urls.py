from django.urls import path

from apps.workloads import views

app_name = "workloads"
urlpatterns = [
    path("", views.workload_list, name="list"),
    path("new", views.workload_new, name="new"),
    path("preview", views.workload_preview, name="preview"),
    path("datasets/", views.dataset_list, name="datasets"),
    path("tokenizers/", views.tokenizer_list, name="tokenizers"),
    path("<int:pk>/", views.workload_detail, name="detail"),
    path("<int:pk>/edit", views.workload_edit, name="edit"),
    path("<int:pk>/archive", views.workload_archive, {"archived": True}, name="archive"),
    path("<int:pk>/unarchive", views.workload_archive, {"archived": False}, name="unarchive"),
    path("<int:pk>/delete", views.workload_delete, name="delete"),
]
