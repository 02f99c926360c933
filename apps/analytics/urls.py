from django.urls import path

from apps.analytics import views

app_name = "analytics"
urlpatterns = [
    path("", views.analytics_index, name="index"),
    path("decision/", views.decision_index, name="decision-index"),
    path("decision/<slug:kind>/", views.decision_page, name="decision"),
    path("decision/<slug:kind>/export.<str:fmt>", views.decision_export, name="decision-export"),
    path("<slug:slug>/", views.analytics_page, name="view"),
    path("<slug:slug>/export.<str:fmt>", views.analytics_export, name="export"),
]
