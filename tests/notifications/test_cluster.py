"""With a real task cluster (`manage.py qcluster`, tests/cluster.py) on the test's broker (Redis when REDIS_URL is
set, else the ORM broker): notify() queues the deliveries on commit and a worker posts them."""

import hashlib
import hmac

import pytest

from apps.notifications import events
from apps.notifications.models import Delivery
from apps.notifications.services import channel_create, notify
from tests.cluster import kill_cluster, start_cluster, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_worker_posts_the_webhook_once_the_transaction_commits(tmp_path, team, admin_user, receiver):
    """One committed notify() → one signed POST on the local receiver, sent by a worker process."""
    _channel, secret = channel_create(team=team, user=admin_user, name="Hook", kind="webhook", url=receiver.url,
                                      events=[events.GATE_FINISHED])  # fmt: skip
    notify(team_id=team.pk, event=events.GATE_FINISHED, title="Gate “nightly” passed", text="3 of 3 criteria met.",
           url="/gates/1/", dedupe_key="gate-1-passed")  # fmt: skip
    log = tmp_path / "workers.log"
    cluster = start_cluster(log, NOTIFY_WEBHOOK_ALLOW_PRIVATE="true", SITE_URL="https://llmbench.example.com")
    try:
        sent = Delivery.objects.filter(status=Delivery.Status.SENT)
        wait_for(lambda: sent.exists(), 60, lambda: f"the delivery sent ({log.read_text()[-2000:]})")
    finally:
        kill_cluster(cluster)
    (post,) = receiver.received
    assert post.json()["title"] == "Gate “nightly” passed"
    assert post.json()["url"] == "https://llmbench.example.com/gates/1/"
    signed = post.headers["X-Llmbench-Timestamp"].encode() + b"." + post.body
    expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(post.headers["X-Llmbench-Signature"], expected)
    assert Delivery.objects.get().attempts == 1
