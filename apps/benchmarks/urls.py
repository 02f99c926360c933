"""Pages of standard benchmarks: suites, items, runs and their answers (names used by other apps: see the
issue 15 contracts)."""

from django.urls import path

from apps.benchmarks import exports, views

app_name = "benchmarks"
urlpatterns = [
    path("", views.benchmark_index, name="index"),
    path("suites/import/", views.suite_import, name="suite-import"),
    path("suites/<int:pk>/", views.suite_detail, name="suite-detail"),
    path("suites/<int:pk>/delete/", views.suite_delete, name="suite-delete"),
    path("suites/<int:pk>/items/<int:index>/", views.item_detail, name="item"),
    path("runs/new/", views.run_create, name="run-create"),
    path("runs/<int:pk>/", views.run_detail, name="run-detail"),
    path("runs/<int:pk>/live/", views.run_live, name="run-live"),
    path("runs/<int:pk>/answers/", views.run_answers, name="run-answers"),
    path("runs/<int:pk>/export.<str:fmt>", exports.run_export, name="run-export"),
    *[
        path(f"runs/<int:pk>/{action}/", views.run_action, {"action": action}, name=f"run-{action}")
        for action in ("start", "resume", "cancel", "delete")
    ],
]
