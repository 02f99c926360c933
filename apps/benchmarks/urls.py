"""Pages of standard benchmarks (H6 fills this in)."""

app_name = "benchmarks"
urlpatterns = []
