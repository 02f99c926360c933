"""django-q2 entry points of notifications: primary keys in, a service call, nothing else."""

from apps.notifications.services import deliveries_sweep, delivery_attempt


def delivery_send(delivery_id: int) -> str | None:
    """Try one delivery now (queued by notify() on commit and by the sweep)."""
    return delivery_attempt(delivery_id=delivery_id)


def deliveries_sweep_task() -> int:
    """Every minute: queue the deliveries whose next try is due (retries, and tries lost with a worker)."""
    return deliveries_sweep()
