from django.urls import path

from apps.analytics import views

app_name = "analytics"
urlpatterns = [
    path("", views.analytics_index, name="index"),
    path("<slug:slug>/", views.analytics_page, name="view"),
    path("<slug:slug>/export.<str:fmt>", views.analytics_export, name="export"),
]
