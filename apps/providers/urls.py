from django.urls import path

from apps.providers import views

app_name = "providers"
urlpatterns = [
    path("", views.endpoint_list, name="list"),
    path("new/", views.endpoint_edit, name="new"),
    path("<int:pk>/", views.endpoint_edit, name="edit"),
    path("<int:pk>/delete/", views.endpoint_delete, name="delete"),
    path("<int:pk>/test/", views.endpoint_test_view, name="test"),
]
