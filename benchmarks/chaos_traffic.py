"""The chaos soak's MQTT clients (`chaos_soak.py`): the publisher that sends the
workload and notes every PUBACK, and the observer that learns alert ids from the
retained states and sees the service go online."""

from __future__ import annotations

import contextlib
import heapq
import json
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from chaos_ledger import Msg, SentAlert

HOST = "127.0.0.1"
ACK_GIVE_UP_S = 30.0  # an ack waits this long for the alert to show up, then is not sent


def mqtt_client(name: str, *, clean: bool = True) -> Any:
    import paho.mqtt.client as mqtt  # noqa: PLC0415
    from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=name,
        protocol=mqtt.MQTTv311,
        clean_session=clean,
    )
    client.reconnect_delay_set(0.1, 1)
    return client


class Observer:
    """Watches `<base>/status` and the retained `<base>/alert/+` states: which alert id
    a type got (acks need it) and whether the service is online."""

    def __init__(self, port: int, base: str, run_id: str) -> None:
        self.base = base
        self.ids: dict[str, str] = {}  # type -> alert id
        self.states: dict[str, str] = {}  # alert id -> last state seen
        self.online = threading.Event()
        self.online_times: list[float] = []  # every `online` on <base>/status
        self.client = mqtt_client(f"soak-observer-{run_id}")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect_async(HOST, port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, client: Any, *_a: Any) -> None:
        client.subscribe([(f"{self.base}/status", 1), (f"{self.base}/alert/+", 1)])

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        if msg.topic == f"{self.base}/status":
            if msg.payload == b"online":
                self.online_times.append(time.time())
                self.online.set()
            else:
                self.online.clear()
            return
        if not msg.payload:
            return
        with contextlib.suppress(ValueError, AttributeError, KeyError):
            state = json.loads(msg.payload)
            self.ids.setdefault(state["type"], state["id"])
            self.states[state["id"]] = state["state"]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass(order=True)
class Action:
    at: float
    seq: int
    kind: str  # ack | resolve
    atype: str


class Publisher:
    """Sends `rate` messages/s: `new_rate` new alerts/s, each with its planned ack and/or
    resolve (or neither), and repeats of open alerts filling the rest. QoS 1 on a
    persistent session: paho keeps what the broker has not PUBACKed and sends it again
    after a reconnect, so a broker restart loses nothing on the way in."""

    def __init__(
        self, port: int, base: str, run_id: str, rng: random.Random, observer: Observer
    ) -> None:
        self.base, self.rng, self.observer = base, rng, observer
        self.sent: dict[str, SentAlert] = {}
        self.skipped_acks = 0
        self._open: list[str] = []  # types that may still repeat
        self._plan: list[Action] = []
        self._pending: list[tuple[int, Msg]] = []  # (mid, Msg) not PUBACKed yet
        self._pubacks: dict[int, float] = {}  # mid -> PUBACK time, from paho's thread
        self._seq = 0
        self.client = mqtt_client(f"soak-publisher-{run_id}", clean=False)
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)  # unbounded: nothing dropped while down
        self.client.on_publish = self._on_publish
        self.client.connect_async(HOST, port, keepalive=10)
        self.client.loop_start()

    def _on_publish(self, _c: Any, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        # Also called for a message paho sent again after a reconnect (with DUP).
        self._pubacks[mid] = time.time()

    def _publish(self, topic: str, payload: dict[str, Any]) -> Msg:
        msg = Msg(sent=time.time())
        # While the broker is down this returns MQTT_ERR_NO_CONN and paho keeps the
        # message for the next connection: the mid still identifies it.
        info = self.client.publish(topic, json.dumps(payload), qos=1)
        self._pending.append((info.mid, msg))
        return msg

    def note_pubacks(self) -> int:
        """Stamp the messages PUBACKed since the last call; returns how many wait."""
        waiting = []
        for mid, msg in self._pending:
            at = self._pubacks.pop(mid, None)
            if at is None:
                waiting.append((mid, msg))
            else:
                msg.puback = at
        self._pending = waiting
        return len(waiting)

    def _new(self, now: float) -> None:
        atype = f"t{len(self.sent):06d}"
        alert = SentAlert(atype)
        self.sent[atype] = alert
        alert.firing.append(self._firing(atype))
        self._open.append(atype)
        fate, rng = self.rng.random(), self.rng
        # 15 % stay open to the end; the rest are acked and/or resolved 0.5-9 s in,
        # so that acks land before, near and after each level's due time.
        ack_at = now + rng.uniform(0.5, 9) if 0.15 <= fate < 0.70 else None
        resolve_at = None
        if 0.45 <= fate < 0.70 and ack_at is not None:
            resolve_at = ack_at + rng.uniform(0.5, 4)
        elif fate >= 0.70:
            resolve_at = now + rng.uniform(0.5, 9)
        for at, kind in ((ack_at, "ack"), (resolve_at, "resolve")):
            if at is not None:
                self._seq += 1
                heapq.heappush(self._plan, Action(at, self._seq, kind, atype))

    def _firing(self, atype: str, status: str = "firing") -> Msg:
        return self._publish(
            f"{self.base}/in",
            {
                "source": "soak",
                "type": atype,
                "severity": "critical",
                "status": status,
                "message": "chaos soak",
            },
        )

    def _due_action(self, now: float) -> bool:
        """Send the next due ack or resolve, if any; False when none is due."""
        while self._plan and self._plan[0].at <= now:
            action = heapq.heappop(self._plan)
            alert = self.sent[action.atype]
            if action.kind == "resolve":
                alert.resolve = self._firing(action.atype, "resolved")
                with contextlib.suppress(ValueError):
                    self._open.remove(action.atype)
                return True
            alert_id = self.observer.ids.get(action.atype)
            if alert_id is None:  # not stored yet (or not seen): ack it when it is
                if now - action.at < ACK_GIVE_UP_S:
                    self._seq += 1
                    heapq.heappush(self._plan, Action(now + 0.5, self._seq, "ack", action.atype))
                else:
                    self.skipped_acks += 1
                continue
            alert.ack = self._publish(
                f"{self.base}/alert/{alert_id}/ack", {"by": "soak", "note": action.atype}
            )
            return True
        return False

    def run(self, seconds: float, rate: float, new_rate: float, stop: threading.Event) -> None:
        start = time.time()
        next_new, tick, n = start, 1.0 / rate, 0
        while not stop.is_set():
            target = start + n * tick
            if target - start >= seconds:
                break
            delay = target - time.time()
            if delay > 0:
                time.sleep(delay)
            now = time.time()
            if now >= next_new:
                self._new(now)
                next_new += 1.0 / new_rate
            elif not self._due_action(now):
                if self._open:
                    atype = self._open[self.rng.randrange(len(self._open))]
                    self.sent[atype].firing.append(self._firing(atype))
                else:
                    self._new(now)
            n += 1
            if n % 20 == 0:
                self.note_pubacks()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
