from apps.workloads.api import views
from llmbench.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("workloads", views.WorkloadViewSet, basename="workload")
router.register("workload-datasets", views.WorkloadDatasetViewSet, basename="workload-dataset")
router.register("tokenizers", views.TokenizerViewSet, basename="tokenizer")
urlpatterns = [*router.urls]
