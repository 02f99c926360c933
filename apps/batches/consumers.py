"""Live progress of a load sweep over a websocket: signed in, same-origin (asgi.py), and a member
of the sweep's team. The first message is the state read from the database; then the consumer
forwards the worker's group messages (instant with Redis) and also re-reads the database every
half second, so progress arrives even where the channel layer cannot cross processes (the
in-memory layer of `make run`) and a reconnecting page always shows the truth."""

import asyncio
import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.accounts.models import Membership
from apps.batches.models import LoadSweep
from apps.batches.services import progress_payload

POLL_S = 0.5


class SweepProgressConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        sweep_id = self.scope["url_route"]["kwargs"]["sweep_id"]
        self.sweep = await self._visible_sweep(user, sweep_id) if user and user.is_authenticated else None
        if self.sweep is None:
            await self.close(code=4403)
            return
        self.last_sent = ""
        await self.channel_layer.group_add(self.sweep.group_name, self.channel_name)
        await self.accept()
        self.poller = asyncio.create_task(self._poll())

    async def disconnect(self, code):
        if getattr(self, "sweep", None) is not None:
            self.poller.cancel()
            await self.channel_layer.group_discard(self.sweep.group_name, self.channel_name)

    async def sweep_progress(self, event):
        await self._send_if_new(event["payload"])

    async def _poll(self):
        while True:
            payload = await self._payload()
            await self._send_if_new(payload)
            if payload is None or payload["status"] in ("completed", "failed", "cancelled"):
                return
            await asyncio.sleep(POLL_S)

    async def _send_if_new(self, payload: dict | None) -> None:
        text = json.dumps(payload)
        if payload is not None and text != self.last_sent:
            self.last_sent = text
            await self.send(text_data=text)

    @database_sync_to_async
    def _payload(self) -> dict | None:
        sweep = LoadSweep.objects.filter(pk=self.sweep.pk).first()
        return progress_payload(sweep) if sweep else None

    @database_sync_to_async
    def _visible_sweep(self, user, sweep_id: int) -> LoadSweep | None:
        sweep = LoadSweep.objects.filter(pk=sweep_id).first()
        if sweep is None or not Membership.objects.filter(user=user, team_id=sweep.team_id).exists():
            return None
        return sweep
