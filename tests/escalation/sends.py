"""Read what the recording servers received, as (channel, recipient, text) rows."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiomqtt

from tests.notify.conftest import HttpRecorder, SmtpRecorder


@dataclass(frozen=True)
class Sent:
    channel: str
    recipient: str
    text: str


def sends(smtp: SmtpRecorder, http: HttpRecorder) -> list[Sent]:
    out = []
    for message, (_sender, rcpts) in zip(smtp.messages, smtp.envelopes, strict=False):
        body = message.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        out.extend(Sent("email", r, f"{message['Subject']}\n{text}") for r in rcpts)
    for request in http.requests:
        if request.path.startswith("/slack"):
            out.append(Sent("slack", request.json.get("channel", ""), request.json.get("text", "")))
        elif request.path.endswith("/Messages.json"):
            out.append(Sent("sms", request.form["To"], request.form["Body"]))
        elif request.path.endswith("/Calls.json"):
            out.append(Sent("phone", request.form["To"], request.form.get("Twiml", "")))
    return out


async def wait_sends(
    smtp: SmtpRecorder, http: HttpRecorder, count: int, timeout: float = 10
) -> list[Sent]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(found := sends(smtp, http)) < count:
        if loop.time() > deadline:
            raise AssertionError(f"{len(found)} notifications, wanted {count}: {found}")
        await asyncio.sleep(0.02)
    return found


async def settle(seconds: float = 0.6) -> None:
    """Give the escalation loop (0.1 s polls) time to act on something it should not."""
    await asyncio.sleep(seconds)


async def publish_alerts(port: int, base: str, source: str, count: int) -> float:
    """`count` critical alerts `<source>/t<n>` published at once at QoS 1, as a storm
    arrives; returns the wall time (s) the first left."""
    async with aiomqtt.Client("127.0.0.1", port, max_inflight_messages=200) as client:
        sent = time.time()
        await asyncio.gather(
            *(
                client.publish(
                    f"{base}/in",
                    f'{{"source": "{source}", "type": "t{n}", "severity": "critical"}}',
                    qos=1,
                )
                for n in range(count)
            )
        )
    return sent
