from django.urls import path

from apps.capacity import views

app_name = "capacity"
urlpatterns = [
    path("", views.capacity_list, name="list"),
    path("new/", views.capacity_new, name="new"),
    path("compare/", views.capacity_compare, name="compare"),
    path("<int:pk>/", views.capacity_detail, name="detail"),
    path("<int:pk>/live/", views.capacity_live, name="live"),
    *[
        path(f"<int:pk>/{action}/", views.capacity_action, {"action": action}, name=action)
        for action in ("start", "resume", "cancel", "delete")
    ],
]
