from django.urls import path

from apps.batches import views

app_name = "batches"
urlpatterns = [
    path("", views.sweep_list, name="sweeps"),
    path("load/new/", views.sweep_new, name="sweep-new"),
    path("load/<int:pk>/", views.sweep_detail, name="sweep"),
    path("load/<int:pk>/start/", views.sweep_action, {"action": "start"}, name="sweep-start"),
    path("load/<int:pk>/cancel/", views.sweep_action, {"action": "cancel"}, name="sweep-cancel"),
]
