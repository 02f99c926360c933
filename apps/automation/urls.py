"""automation pages: /automation/ (schedules), a new schedule from a run's page, edit, pause, resume, delete and
the timeline of each schedule."""

from django.urls import path, re_path

from apps.automation import views

app_name = "automation"
urlpatterns = [
    path("", views.schedule_list, name="list"),
    # /automation/schedules/new?kind=experiment&run=12 (with or without the trailing slash)
    re_path(r"^schedules/new/?$", views.schedule_new, name="schedule-new"),
    path("schedules/preview/", views.schedule_preview, name="schedule-preview"),
    path("schedules/<int:pk>/", views.schedule_timeline, name="timeline"),
    path("schedules/<int:pk>/edit/", views.schedule_edit, name="schedule-edit"),
    *[
        path(f"schedules/<int:pk>/{action}/", views.schedule_action, {"action": action}, name=f"schedule-{action}")
        for action in ("pause", "resume", "delete")
    ],
]
