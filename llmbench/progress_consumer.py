"""A websocket consumer of one job's live progress, shared by the apps whose jobs publish progress (load sweeps,
benchmark runs). Its own module: llmbench/consumers.py reads the dashboard, which reads every app."""

import asyncio
import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.accounts.models import Membership


class JobProgressConsumer(AsyncJsonWebsocketConsumer):
    """Live progress of one job (a load sweep, a benchmark run …) over a websocket: signed in, same-origin
    (asgi.py), and a member of the job's team (else closed with 4403). The first message is the state read from
    the database; then the consumer relays the worker's group messages (`{"type": "<kind>.progress", "payload":
    …}` to the job's `group_name`, instant with Redis) and also re-reads the database every `poll_s`, so progress
    arrives where the channel layer cannot cross processes (the in-memory layer of `make run`) and a reconnecting
    page always shows the truth. A payload is sent only when it changed; reading stops once the job finished.

    A subclass names `model` (with `team_id` and `group_name`), the URL keyword of its id, `read_payload` (sync,
    run in a thread) and binds its group message type to `relay`, e.g. `sweep_progress = JobProgressConsumer.relay`.
    """

    model = None
    url_kwarg = ""
    poll_s = 1.0
    finished_statuses = ("completed", "failed", "cancelled")

    def read_payload(self, job_id: int) -> dict | None:
        raise NotImplementedError

    async def connect(self):
        user = self.scope.get("user")
        job_id = self.scope["url_route"]["kwargs"][self.url_kwarg]
        self.job = await self._visible_job(user, job_id) if user and user.is_authenticated else None
        if self.job is None:
            await self.close(code=4403)
            return
        self.last_sent = ""
        await self.channel_layer.group_add(self.job.group_name, self.channel_name)
        await self.accept()
        self.poller = asyncio.create_task(self._poll())

    async def disconnect(self, code):
        if getattr(self, "job", None) is not None:
            self.poller.cancel()
            await self.channel_layer.group_discard(self.job.group_name, self.channel_name)

    async def relay(self, event):
        await self._send_if_new(event["payload"])

    async def _poll(self):
        while True:
            payload = await database_sync_to_async(self.read_payload)(self.job.pk)
            await self._send_if_new(payload)
            if payload is None or payload.get("status") in self.finished_statuses:
                return
            await asyncio.sleep(self.poll_s)

    async def _send_if_new(self, payload: dict | None) -> None:
        text = json.dumps(payload)
        if payload is not None and text != self.last_sent:
            self.last_sent = text
            await self.send(text_data=text)

    @database_sync_to_async
    def _visible_job(self, user, job_id: int):
        job = self.model.objects.filter(pk=job_id).first()
        if job is None or not Membership.objects.filter(user=user, team_id=job.team_id).exists():
            return None
        return job
