"""API of standard benchmarks (H6 fills this in)."""

urlpatterns = []
