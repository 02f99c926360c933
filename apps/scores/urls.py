from django.urls import path

from apps.scores import views

app_name = "scores"
urlpatterns = [
    path("", views.leaderboard_page, name="leaderboard"),
    path("quantization/", views.quantization_page, name="quantization"),
    path("import/", views.import_page, name="import"),
    path("variants/", views.variant_list, name="variants"),
    path("variants/<int:pk>/", views.variant_detail, name="variant"),
    path("variants/<int:pk>/delete/", views.variant_delete, name="variant-delete"),
    path("served/<int:endpoint_pk>/", views.served_variants, name="served"),
]
