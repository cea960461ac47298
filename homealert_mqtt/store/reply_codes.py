"""SMS reply codes and the replies already applied (sms_code.lua, sms_reply.lua)."""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from homealert_mqtt.clock import Clock
from homealert_mqtt.store.scripts import as_str

if TYPE_CHECKING:
    from homealert_mqtt.store.alert_store import AlertStore

CODE_CHARS = string.ascii_uppercase + string.digits
CODE_LENGTH = 4
CANDIDATES = 8  # random codes offered per call; all taken is one in 36^4 per open alert
DONE_KEPT_MS = 7 * 24 * 3600 * 1000  # replies older than the poll window by far


def new_code() -> str:
    return "".join(secrets.choice(CODE_CHARS) for _ in range(CODE_LENGTH))


class ReplyCodes:
    def __init__(self, alerts: AlertStore, clock: Clock) -> None:
        self.redis = alerts.redis
        self.keys = alerts.keys
        self.clock = clock
        self._codes = alerts.scripts.sms_code
        self._replies = alerts.scripts.sms_reply

    async def assign(self, alert_ids: Sequence[str]) -> list[str]:
        """Each alert's code ('' for one not open)."""
        candidates = [new_code() for _ in range(CANDIDATES * max(1, len(alert_ids)))]
        raw = await self._codes(
            keys=[self.keys.prefix],
            args=["assign", json.dumps(list(alert_ids)), json.dumps(candidates)],
        )
        found: Any = json.loads(as_str(raw))
        return [str(c) for c in found] if isinstance(found, list) else []

    async def paged(self, number: str, alert_ids: Sequence[str]) -> None:
        await self._codes(
            keys=[self.keys.prefix],
            args=["paged", number, json.dumps(list(alert_ids)), self.clock()],
        )

    async def alert_for(self, code: str) -> str | None:
        found = await self.redis.hget(self.keys.sms_codes, f"c:{code.upper()}")
        return as_str(found) if found is not None else None

    async def last_paged(self, number: str) -> list[str] | None:
        """What the last SMS to `number` was about; None: never paged."""
        raw = await self.redis.hget(self.keys.sms_last, number)
        if raw is None:
            return None
        return [str(i) for i in json.loads(as_str(raw)).get("ids") or []]

    async def claim_reply(self, sid: str, lease_ms: int) -> bool:
        return bool(
            await self._replies(
                keys=[self.keys.prefix], args=["claim", sid, self.clock(), lease_ms]
            )
        )

    async def reply_done(self, sid: str) -> None:
        await self._replies(keys=[self.keys.prefix], args=["done", sid, self.clock(), DONE_KEPT_MS])
