from django.urls import path

from apps.experiments import views
from apps.experiments.exports import FORMATS as EXPORT_FORMATS

app_name = "experiments"
urlpatterns = [
    path("", views.experiment_list, name="list"),
    path("new/", views.experiment_new, name="new"),
    path("testcases/", views.testcase_list, name="testcases"),
    path("testcases/new/", views.testcase_edit, name="testcase-new"),
    path("testcases/<int:pk>/", views.testcase_edit, name="testcase"),
    path("testcases/<int:pk>/approve/", views.testcase_decide, {"decision": "approve"}, name="testcase-approve"),
    path("testcases/<int:pk>/reject/", views.testcase_decide, {"decision": "reject"}, name="testcase-reject"),
    path("<int:pk>/", views.experiment_detail, name="detail"),
    path("<int:pk>/compare/", views.experiment_compare, name="compare"),
    *[
        path(f"<int:pk>/export.{fmt}", views.experiment_export, {"fmt": fmt}, name=f"export-{fmt}")
        for fmt in EXPORT_FORMATS
    ],
    *[
        path(f"<int:pk>/{action}/", views.experiment_action, {"action": action}, name=action)
        for action in ("start", "cancel", "favourite", "archive")
    ],
]
