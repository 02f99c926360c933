from django.urls import path

from apps.accounts import views

app_name = "accounts"
urlpatterns = [
    path("teams/switch/", views.switch_team, name="switch-team"),
    path("account/tokens/", views.tokens, name="tokens"),
    path("account/tokens/<int:pk>/revoke/", views.token_revoke_view, name="token-revoke"),
]
