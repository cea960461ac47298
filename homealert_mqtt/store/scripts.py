"""Load the Lua scripts once (each with _lib.lua in front) and run them by EVALSHA."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError, ResponseError

# Error codes of Redis refusing a write for now; ingest.lua keeps the same list (TRANSIENT).
TRANSIENT_CODES = (
    "OOM",
    "READONLY",
    "MISCONF",
    "MASTERDOWN",
    "NOREPLICAS",
    "LOADING",
    "BUSY",
    "TRYAGAIN",
    "CLUSTERDOWN",
)


def _source(name: str) -> str:
    lua = resources.files("homealert_mqtt.store").joinpath("lua")
    # _noise.lua uses _lib.lua's functions; both come before every script.
    return "\n".join(
        lua.joinpath(part).read_text("utf-8") for part in ("_lib.lua", "_noise.lua", name)
    )


SCRIPT_NAMES = (
    "ingest",
    "command",
    "expire",
    "summary",
    "group_state",
    "schedule",
    "claim_flush",
    "complete_flush",
    "reserve",
    "settle",
    "bury",
    "presence",
    "sms_code",
    "sms_reply",
    "silence_set",
    "noise_mark",
    "inhibit_release",
    "ack_timeout",
    "auto_resolve",
    "flap_settle",
    "silence_end",
)


@dataclass(frozen=True, slots=True)
class Scripts:
    ingest: AsyncScript
    command: AsyncScript
    expire: AsyncScript
    summary: AsyncScript
    group_state: AsyncScript
    schedule: AsyncScript
    claim_flush: AsyncScript
    complete_flush: AsyncScript
    reserve: AsyncScript
    settle: AsyncScript
    bury: AsyncScript
    presence: AsyncScript
    sms_code: AsyncScript
    sms_reply: AsyncScript
    silence_set: AsyncScript
    noise_mark: AsyncScript
    inhibit_release: AsyncScript
    ack_timeout: AsyncScript
    auto_resolve: AsyncScript
    flap_settle: AsyncScript
    silence_end: AsyncScript

    @classmethod
    def register(cls, redis: Redis) -> Scripts:
        # register_script keeps the SHA and falls back to SCRIPT LOAD once after a Redis
        # restart (NOSCRIPT), so every call is an EVALSHA.
        return cls(**{name: redis.register_script(_source(f"{name}.lua")) for name in SCRIPT_NAMES})


def is_script_bug(err: RedisError) -> bool:
    """A script that failed in Lua itself (it would fail the same way on every retry),
    not Redis refusing writes for now or a lost connection (worth retrying).

    redis-py turns most refusals into subclasses of ResponseError; inside a script, Redis
    6.2 reports them as text ("... @user_script: 1: -OOM command not allowed ...").
    """
    if type(err) is not ResponseError:
        return False
    text = str(err)
    return "user_script" in text and not any(
        text.startswith(f"{code} ") or f"-{code} " in text for code in TRANSIENT_CODES
    )


def as_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
