"""Live progress of a benchmark run over a websocket: signed in, same-origin (asgi.py), and a member of the run's
team. The first message is the state read from the database (selectors.progress_payload); then the consumer relays
the worker's group messages ({"type": "benchmark.progress", "payload": …} to group "benchmark-run-<id>", instant
with Redis) and also re-reads the database every second, so progress arrives where the channel layer cannot cross
processes (the in-memory layer of `make run`) and a reconnecting page always shows the truth. It stops reading once
the run has finished."""

import asyncio
import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.accounts.models import Membership
from apps.benchmarks.models import FINISHED, BenchmarkRun
from apps.benchmarks.selectors import progress_payload

POLL_S = 1.0


class BenchmarkRunProgressConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        run_id = self.scope["url_route"]["kwargs"]["run_id"]
        self.run = await self._visible_run(user, run_id) if user and user.is_authenticated else None
        if self.run is None:
            await self.close(code=4403)
            return
        self.last_sent = ""
        await self.channel_layer.group_add(self.run.group_name, self.channel_name)
        await self.accept()
        self.poller = asyncio.create_task(self._poll())

    async def disconnect(self, code):
        if getattr(self, "run", None) is not None:
            self.poller.cancel()
            await self.channel_layer.group_discard(self.run.group_name, self.channel_name)

    async def benchmark_progress(self, event):
        await self._send_if_new(event["payload"])

    async def _poll(self):
        while True:
            payload = await self._payload()
            await self._send_if_new(payload)
            if payload is None or payload.get("status") in FINISHED:
                return
            await asyncio.sleep(POLL_S)

    async def _send_if_new(self, payload: dict | None) -> None:
        text = json.dumps(payload)
        if payload is not None and text != self.last_sent:
            self.last_sent = text
            await self.send(text_data=text)

    @database_sync_to_async
    def _payload(self) -> dict | None:
        run = BenchmarkRun.objects.select_related("suite").filter(pk=self.run.pk).first()
        return progress_payload(run) if run else None

    @database_sync_to_async
    def _visible_run(self, user, run_id: int) -> BenchmarkRun | None:
        run = BenchmarkRun.objects.filter(pk=run_id).first()
        if run is None or not Membership.objects.filter(user=user, team_id=run.team_id).exists():
            return None
        return run
