#!/usr/bin/env python3
"""The chaos soak's sinks, one process (`chaos_soak.py` starts it): an SMTP server
(aiosmtpd with the tests' SmtpRecorder), an HTTP server standing in for Slack's webhook
and Twilio's Messages and Calls (the tests' HttpRecorder), and an MQTT subscriber on
`<base>/notify/+` for the mqtt channel. Each page is appended, with its arrival time,
as one JSON line to `--out`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def role_sinks(out: Path, base: str, mqtt_port: int, client_id: str, max_seconds: float) -> None:
    """SMTP, HTTP (Slack + Twilio) and MQTT (`<base>/notify/+`) sinks in one process.
    Prints {"smtp": port, "http": port}, then appends one JSON line per page to `out`
    (flushed, so a crash loses nothing) until SIGTERM."""
    import paho.mqtt.client as mqtt  # noqa: PLC0415
    from aiohttp import web  # noqa: PLC0415
    from aiosmtpd.controller import Controller  # noqa: PLC0415
    from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

    from homealert_mqtt.embedded import free_port  # noqa: PLC0415
    from tests.notify.conftest import HttpRecorder, SmtpRecorder, serving  # noqa: PLC0415

    lock = threading.Lock()
    sink = out.open("a", encoding="utf-8")

    def record(**row: Any) -> None:
        line = json.dumps(row) + "\n"
        with lock:
            sink.write(line)
            sink.flush()

    class TimedSmtp(SmtpRecorder):
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            at = time.time()
            answer = await super().handle_DATA(server, session, envelope)
            message, (_sender, rcpts) = self.messages[-1], self.envelopes[-1]
            body = message.get_body(("plain",))
            text = f"{message['Subject']}\n{body.get_content() if body is not None else ''}"
            for rcpt in rcpts:
                record(at=at, channel="email", recipient=rcpt, text=text)
            self.messages.clear()  # a long soak: keep nothing in memory
            self.envelopes.clear()
            return answer

    class TimedHttp(HttpRecorder):
        async def handle(self, request: web.Request) -> web.StreamResponse:
            at = time.time()
            if request.path.startswith("/slack"):
                body = await request.json()
                record(at=at, channel="slack", text=str(body.get("text", "")))
            elif request.path.endswith(("/Messages.json", "/Calls.json")):
                form = await request.post()
                sms = request.path.endswith("/Messages.json")
                record(
                    at=at,
                    channel="sms" if sms else "phone",
                    recipient=str(form.get("To", "")),
                    text=str(form.get("Body" if sms else "Twiml", "")),
                )
            answer = await super().handle(request)
            self.requests.clear()
            return answer

    def on_connect(client: Any, _u: Any, _f: Any, _rc: Any, _p: Any) -> None:
        client.subscribe(f"{base}/notify/+", qos=1)

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        record(at=time.time(), channel="mqtt", text=msg.payload.decode("utf-8", "replace"))

    # A persistent session: pages published while it reconnects wait in the broker.
    notify = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=False,
    )
    notify.on_connect = on_connect
    notify.on_message = on_message
    notify.reconnect_delay_set(0.1, 1)
    notify.connect_async(HOST, mqtt_port, keepalive=10)
    notify.loop_start()

    smtp = TimedSmtp(port=free_port())
    controller = Controller(smtp, hostname=HOST, port=smtp.port)
    controller.start()

    async def serve() -> None:
        http = TimedHttp()
        async with serving(http):
            print(json.dumps({"smtp": smtp.port, "http": http.url}), flush=True)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            loop.add_signal_handler(signal.SIGINT, stop.set)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max_seconds)

    try:
        asyncio.run(serve())
    finally:
        controller.stop()
        notify.loop_stop()
        notify.disconnect()
        with lock:
            sink.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--base", required=True)
    parser.add_argument("--mqtt-port", type=int, required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--max-seconds", type=float, default=600)
    args = parser.parse_args()
    role_sinks(args.out, args.base, args.mqtt_port, args.client_id, args.max_seconds)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # the tests' recorders, this checkout's package
    main()
