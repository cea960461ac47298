"""Screenshot of docs/home-assistant-dashboard.yaml in a real Home Assistant.

    .venv/bin/python scripts/ha_dashboard_screenshot.py [--out PATH.png] [--keep]

Needs: the Home Assistant venv of scripts/ha_sandbox.py (HOMEALERT_HA_PYTHON, default
/tmp/ha-venv/bin/python), Debian's `chromium` (`apt-get install -y chromium`), and
mosquitto and redis-server (as for the tests). Everything runs on 127.0.0.1 in a
temporary folder and is stopped at the end:

1. `homealert-mqtt run --embedded` (its own Mosquitto and Redis) with the HTTP
   endpoint on, so the device gets its configuration_url;
2. Home Assistant, onboarded, with the MQTT integration and the dashboard in YAML mode;
3. a few alerts of a house (one acknowledged, one bad message for "Last error");
4. headless Chromium, logged in through the URL, saves the dashboard as a PNG.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.publish as mqtt_publish

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ha_sandbox import HomeAssistant, free_port

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "docs" / "home-assistant-dashboard.yaml"
URL_PATH = "dashboard-homealert"
ALERTS: list[dict[str, Any]] = [
    {
        "source": "basement",
        "type": "water_leak",
        "severity": "critical",
        "message": "Water under the boiler",
    },
    {"source": "garage", "type": "door_open", "severity": "medium", "message": "Open for 20 min"},
    {"source": "nas", "type": "disk_full", "severity": "high", "message": "Volume 1 is 97% full"},
    {"source": "attic", "type": "temperature_high", "severity": "low", "message": "31 °C"},
]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1280,900",
]
CAPTURE_TIMEOUT = 90.0  # seconds for the browser to start and the dashboard to show
# Until this text shows (inside the frontend's shadow DOMs), the dashboard is not drawn.
SHOWN_WHEN = "Water under the boiler"
_FIND_TEXT = """
(text => {
  const walk = node => {
    if (node.shadowRoot && walk(node.shadowRoot)) return true;
    for (const child of node.children || []) if (walk(child)) return true;
    return !(node.children && node.children.length) && (node.textContent || "").includes(text);
  };
  return walk(document.documentElement);
})(%s)
"""


def start_homealert(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    mqtt_port, redis_port, http_port = free_port(), free_port(), free_port()
    config = work / "homealert.yaml"
    config.write_text(
        "http:\n  enabled: true\n  host: 127.0.0.1\n"
        f"  port: {http_port}\n"
        "channels:\n"
        + "".join(f"  {c}:\n    enabled: false\n" for c in ("email", "slack", "sms", "phone"))
    )
    command = [
        str(Path(sys.executable).parent / "homealert-mqtt"),
        "run",
        "--embedded",
        "--config",
        str(config),
        "--data-dir",
        str(work / "data"),
        "--mqtt-port",
        str(mqtt_port),
        "--redis-port",
        str(redis_port),
    ]
    log = (work / "homealert.log").open("ab")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    return process, mqtt_port


def publish(port: int, topic: str, payload: Any) -> None:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    mqtt_publish.single(topic, body, qos=1, hostname="127.0.0.1", port=port)


def wait_mqtt(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            publish(port, "homealert/screenshot/ping", b"")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def raise_alerts(ha: HomeAssistant, port: int) -> None:
    for alert in ALERTS:
        publish(port, "homealert/in", alert)
        time.sleep(1.0)  # distinct ages and first_seen
    publish(port, "homealert/in", b"{not json")  # shows under "Last error"
    ha.wait_for(
        "the open alerts in HA",
        lambda: ha.states().get("sensor.homealert_open_alerts", {}).get("state") == "4",
    )
    garage = next(
        s["attributes"]["id"]
        for s in ha.states().values()
        if s["attributes"].get("source") == "garage" and "alert_state" in s["attributes"]
    )
    publish(port, f"homealert/alert/{garage}/ack", {"by": "Alex", "note": "closing it"})
    ha.wait_for(
        "the acknowledgement in HA",
        lambda: (
            ha.states().get("binary_sensor.homealert_needs_attention", {}).get("state") == "on"
            and ha.states().get("sensor.homealert_active_alerts", {}).get("state") == "3"
        ),
    )


def screenshot(url: str, out: Path, work: Path) -> None:
    """Open `url` in headless Chromium; once the dashboard shows, save it as a PNG.

    Through the DevTools protocol rather than `--screenshot`: that one shoots at the
    load event, long before the frontend has its websocket and draws the cards.
    """
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium not found: apt-get install -y chromium")
    port = free_port()
    command = [
        chromium,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={work / 'chromium'}",
        f"--remote-debugging-port={port}",
        "--remote-allow-origins=*",
        url,
    ]
    log = (work / "chromium.log").open("ab")
    browser = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    try:
        png = asyncio.run(_capture(port))
    finally:
        browser.terminate()
        browser.wait(30)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png)


async def _capture(port: int) -> bytes:
    async with asyncio.timeout(CAPTURE_TIMEOUT), aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{port}/json/list") as answer:
                    pages = [t for t in await answer.json() if t["type"] == "page"]
                if pages:
                    break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        async with http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            ids = iter(range(1, 1_000_000))

            async def call(method: str, **params: Any) -> Any:
                number = next(ids)
                await ws.send_json({"id": number, "method": method, "params": params})
                async for message in ws:
                    data = json.loads(message.data)
                    if data.get("id") == number:
                        return data.get("result", {})
                raise RuntimeError("DevTools connection closed")

            script = _FIND_TEXT % json.dumps(SHOWN_WHEN)
            while True:
                found = await call("Runtime.evaluate", expression=script, returnByValue=True)
                if found.get("result", {}).get("value") is True:
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(1.0)  # let the last cards finish drawing
            shot = await call("Page.captureScreenshot", format="png")
            return base64.b64decode(shot["data"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs" / "images" / "home-assistant-dashboard.png"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="homealert-screenshot-"))
    homealert, mqtt_port = start_homealert(work)
    ha = HomeAssistant(work / "ha", dashboards={URL_PATH: DASHBOARD})
    try:
        wait_mqtt(mqtt_port)
        ha.start()
        ha.onboard()
        ha.wait_running()
        ha.add_mqtt("127.0.0.1", mqtt_port)
        raise_alerts(ha, mqtt_port)
        screenshot(ha.login_url(f"/{URL_PATH}/alerts"), args.out, work)
        print(f"saved {args.out}")
    finally:
        ha.stop()
        homealert.terminate()
        homealert.wait(30)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
