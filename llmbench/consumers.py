"""The dashboard's running-jobs tile over a websocket: signed in, same-origin (asgi.py), and scoped
to the session's active team (ADR 0002), chosen once at connect as a page request would choose it.
It re-reads the team's running and just-finished jobs every POLL_S (three queries of a few rows, plus
the membership, re-checked so a member removed from the team stops receiving) and sends them when they
changed: the running ones for the tile, the finished ones for the page's "Latest" lists.
Polling rather than group messages: three kinds of job publish to per-job groups, and the
in-memory channel layer of `make run` cannot cross from the worker's process anyway."""

import asyncio
import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.accounts.models import Membership
from llmbench.dashboard import Job, dashboard_jobs, session_membership

POLL_S = 1.0


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    """Sends `{"type": "jobs", "jobs": [Job, ...], "finished": [Job, ...]}` at connect and whenever either
    list changes: `jobs` running or queued, `finished` those that finished in the last RECENT minutes."""

    async def connect(self):
        user = self.scope.get("user")
        self.membership = await self._membership(user) if user and user.is_authenticated else None
        if self.membership is None:
            await self.close(code=4403)
            return
        self.last_sent = ""
        await self.accept()
        self.poller = asyncio.create_task(self._poll_forever())

    async def disconnect(self, code):
        if getattr(self, "poller", None) is not None:
            self.poller.cancel()

    async def _poll_forever(self):
        while True:
            jobs = await self._jobs()
            if jobs is None:  # no longer in the team
                await self.close(code=4403)
                return
            text = json.dumps({"type": "jobs", "jobs": jobs[0], "finished": jobs[1]})
            if text != self.last_sent:
                self.last_sent = text
                await self.send(text_data=text)
            await asyncio.sleep(POLL_S)

    @database_sync_to_async
    def _jobs(self) -> tuple[list[Job], list[Job]] | None:
        if not Membership.objects.filter(pk=self.membership.pk, team_id=self.membership.team_id).exists():
            return None
        return dashboard_jobs(self.membership.team)

    @database_sync_to_async
    def _membership(self, user) -> Membership | None:
        session = self.scope.get("session")
        return session_membership(user, {} if session is None else session)
