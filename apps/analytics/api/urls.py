from django.urls import path

from apps.analytics.api import views

urlpatterns = [
    path("analytics/quality/trends", views.quality_trends, name="analytics-quality-trends"),
    path("analytics/quality/breakdown", views.quality_breakdown, name="analytics-quality-breakdown"),
    path("analytics/models/comparison", views.model_comparison, name="analytics-model-comparison"),
    path("analytics/parameters/optimization", views.parameter_optimization, name="analytics-parameter-optimization"),
    path("analytics/parameters/correlation", views.parameter_correlation, name="analytics-parameter-correlation"),
    path("analytics/parameters/insights", views.parameter_insights, name="analytics-parameter-insights"),
    path("analytics/regressions", views.regressions, name="analytics-regressions"),
    path("analytics/leaderboard", views.leaderboard, name="analytics-leaderboard"),
    path("analytics/decision/curves", views.decision_curves, name="analytics-decision-curves"),
    path("analytics/decision/pareto", views.decision_pareto, name="analytics-decision-pareto"),
    path("analytics/decision/cost", views.decision_cost, name="analytics-decision-cost"),
    path("export/analytics/decision/<slug:kind>", views.export_decision, name="export-analytics-decision"),
    path("export/analytics/<slug:slug>", views.export_analytics, name="export-analytics"),
    path("export/custom", views.export_custom, name="export-custom"),
]
