from django.urls import path

app_name = "workloads"
urlpatterns: list = []
