"""Live progress of load sweeps and parameter sweeps over a websocket: signed in, same-origin
(asgi.py), and a member of the batch's team. The first message is the state read from the database; then the consumer
forwards the worker's group messages (instant with Redis) and also re-reads the database every
half second, so progress arrives even where the channel layer cannot cross processes (the
in-memory layer of `make run`) and a reconnecting page always shows the truth."""

import asyncio
import contextlib
import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.db.models import Max

from apps.accounts.models import Membership
from apps.batches.models import Batch, LoadSweep
from apps.batches.selectors import result_rows, result_rows_latest, results
from apps.batches.services import batch_state, progress_payload
from llmbench.progress_consumer import JobProgressConsumer

POLL_S = 0.5
LATEST = 10  # responses the live page of a batch lists


class SweepProgressConsumer(JobProgressConsumer):
    model, url_kwarg, poll_s = LoadSweep, "sweep_id", POLL_S
    sweep_progress = JobProgressConsumer.relay

    def read_payload(self, job_id: int) -> dict | None:
        sweep = LoadSweep.objects.filter(pk=job_id).first()
        return progress_payload(sweep) if sweep else None


class BatchProgressConsumer(AsyncJsonWebsocketConsumer):
    """Live progress of a parameter sweep: the state, then every result as it is stored.

    The first message is `{"type": "state", "state": ..., "results": [...]}` with the latest
    results; then `{"type": "results", "state": ..., "results": [...]}` with the results stored
    since (each with its id, combination, parameters and figures), read from the database when the
    worker's group message says there is something new, and every half second regardless (for the
    in-memory channel layer, which cannot cross processes)."""

    async def connect(self):
        user = self.scope.get("user")
        batch_id = self.scope["url_route"]["kwargs"]["batch_id"]
        self.batch_id = await self._visible(user, batch_id) if user and user.is_authenticated else None
        if self.batch_id is None:
            await self.close(code=4403)
            return
        self.last_id, self.last_state = 0, ""
        self.changed = asyncio.Event()
        await self.channel_layer.group_add(f"batch-{self.batch_id}", self.channel_name)
        await self.accept()
        state, rows = await self._read(initial=True)
        await self.send_json({"type": "state", "state": state, "results": rows})
        self.refresher = asyncio.create_task(self._refresh_forever())

    async def disconnect(self, code):
        if getattr(self, "batch_id", None) is not None:
            if hasattr(self, "refresher"):
                self.refresher.cancel()
            await self.channel_layer.group_discard(f"batch-{self.batch_id}", self.channel_name)

    async def batch_nudge(self, event):
        # Only a signal: the refresher reads the database. Nudges that arrive while it reads fold
        # into one more read, and the consumer never waits on the database to take the next message.
        self.changed.set()

    async def _refresh_forever(self):
        """Read and send what is new whenever nudged, and every POLL_S regardless, until the batch ends."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout=POLL_S)
            self.changed.clear()
            state, rows = await self._read()
            text = json.dumps(state)
            if rows or text != self.last_state:
                self.last_state = text
                await self.send_json({"type": "results", "state": state, "results": rows})
            if state["status"] in ("completed", "failed", "cancelled", "deleted") and not rows:
                return

    @database_sync_to_async
    def _read(self, initial: bool = False) -> tuple[dict | None, list[dict]]:
        batch = Batch.objects.select_related("experiment").filter(pk=self.batch_id).first()
        if batch is None:
            return {"id": self.batch_id, "status": "deleted"}, []
        if initial:
            # One writer per batch (its lease) inserts in id order, so "after the last id sent"
            # never skips a row that commits later.
            self.last_id = results(batch).aggregate(last=Max("id"))["last"] or 0
            state = batch_state(batch)
            self.last_state = json.dumps(state)
            return state, list(reversed(result_rows_latest(batch, LATEST, through_id=self.last_id)))
        rows = result_rows(batch, after_id=self.last_id)
        if rows:
            self.last_id = rows[-1]["id"]
        for row in rows[:-LATEST]:  # the page lists the latest ten: older ones travel without their text
            del row["text"]
        return batch_state(batch), rows

    @database_sync_to_async
    def _visible(self, user, batch_id: int) -> int | None:
        batch = Batch.objects.select_related("experiment").filter(pk=batch_id).first()
        if batch is None or not Membership.objects.filter(user=user, team_id=batch.experiment.team_id).exists():
            return None
        return batch.pk
