"""A local server speaking the parts of Twilio's REST API the service uses: sending SMS
(POST Messages.json) and listing messages (GET Messages.json, Twilio's list shape)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from aiohttp import web

from tests.notify.conftest import LOCALHOST


@dataclass
class TwilioStandIn:
    url: str = ""
    sent: list[dict[str, str]] = field(default_factory=list)  # To, From, Body
    inbound: list[dict[str, Any]] = field(default_factory=list)  # the message list
    listed: list[dict[str, str]] = field(default_factory=list)  # query of each GET
    _sids: itertools.count[int] = field(default_factory=itertools.count)

    def reply(self, number: str, to: str, body: str) -> str:
        """Someone texts `body` from `number` to our number `to`."""
        sid = f"SM{next(self._sids):032x}"
        self.inbound.insert(  # newest first, as Twilio lists them
            0,
            {
                "sid": sid,
                "from": number,
                "to": to,
                "body": body,
                "direction": "inbound",
                "status": "received",
                "date_sent": format_datetime(datetime.now(UTC), usegmt=True),
                "num_segments": "1",
            },
        )
        return sid

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not request.path.endswith("/Messages.json"):
            return web.json_response({"message": "not found"}, status=404)
        if request.method == "POST":
            form = {k: str(v) for k, v in (await request.post()).items()}
            self.sent.append(form)
            sid = f"SM{next(self._sids):032x}"
            return web.json_response({"sid": sid, "status": "queued"}, status=201)
        query = dict(request.query)
        self.listed.append(query)
        found = [m for m in self.inbound if m["to"] == query.get("To", m["to"])]
        return web.json_response(
            {
                "messages": found,
                "uri": request.path_qs,
                "first_page_uri": request.path_qs,
                "next_page_uri": None,
                "previous_page_uri": None,
                "page": 0,
                "page_size": 50,
                "start": 0,
                "end": max(0, len(found) - 1),
            }
        )


@contextlib.asynccontextmanager
async def serving_twilio() -> AsyncIterator[TwilioStandIn]:
    standin = TwilioStandIn()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", standin.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, LOCALHOST, 0)
    await site.start()
    standin.url = f"http://{LOCALHOST}:{runner.addresses[0][1]}"
    try:
        yield standin
    finally:
        await runner.cleanup()
