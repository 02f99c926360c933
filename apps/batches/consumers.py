"""Live progress of a load sweep over a websocket: signed in, same-origin (asgi.py), and a member
of the sweep's team; the first message is the state read from the database."""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.accounts.models import Membership
from apps.batches.models import LoadSweep
from apps.batches.services import progress_payload


class SweepProgressConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        sweep_id = self.scope["url_route"]["kwargs"]["sweep_id"]
        self.sweep = await self._visible_sweep(user, sweep_id) if user and user.is_authenticated else None
        if self.sweep is None:
            await self.close(code=4403)
            return
        await self.channel_layer.group_add(self.sweep.group_name, self.channel_name)
        await self.accept()
        await self.send_json(await database_sync_to_async(progress_payload)(self.sweep))

    async def disconnect(self, code):
        if getattr(self, "sweep", None) is not None:
            await self.channel_layer.group_discard(self.sweep.group_name, self.channel_name)

    async def sweep_progress(self, event):
        await self.send_json(event["payload"])

    @database_sync_to_async
    def _visible_sweep(self, user, sweep_id: int) -> LoadSweep | None:
        sweep = LoadSweep.objects.filter(pk=sweep_id).first()
        if sweep is None or not Membership.objects.filter(user=user, team_id=sweep.team_id).exists():
            return None
        return sweep
