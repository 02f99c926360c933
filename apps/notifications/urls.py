"""Notification pages under /notifications/."""

from django.urls import path

from apps.notifications import views

app_name = "notifications"
urlpatterns = [
    path("", views.index, name="index"),
    path("choices/", views.choices_save, name="choices"),
    path("channels/new/", views.channel_new, name="channel-new"),
    path("channels/<int:pk>/", views.channel_edit, name="channel-edit"),
    path("channels/<int:pk>/test/", views.channel_test_view, name="channel-test"),
    path("channels/<int:pk>/rotate-secret/", views.channel_rotate, name="channel-rotate"),
    path("channels/<int:pk>/delete/", views.channel_delete_view, name="channel-delete"),
    path("deliveries/", views.delivery_list, name="deliveries"),
]
