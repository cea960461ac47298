"""Home Assistant every day (issue 13, points 1-7), against real Mosquitto and Redis.

The probe plays Home Assistant's part on the wire: it says `online`/`offline` on
`<prefix>/status`, presses buttons by publishing their `payload_press`, and reads what
the service retains. tests/homeassistant/test_real_home_assistant.py runs the ghost
entity case against a real Home Assistant.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from homealert_mqtt.config import Settings, load_config
from homealert_mqtt.config.loader import ConfigError
from homealert_mqtt.homeassistant.discovery import alert_config_topics
from homealert_mqtt.homeassistant.runtime import configuration_url
from homealert_mqtt.models import State
from homealert_mqtt.store.ha_removed import RemovedEntities
from tests.conftest import FakeClock
from tests.homeassistant.test_service_e2e import (
    config,
    empty,
    new_alert,
    non_empty,
    retained_under,
)
from tests.probe import Probe
from tests.servers import MosquittoServer

pytestmark = pytest.mark.timeout(40)

StartService = Callable[..., Any]
LEAK = {"source": "basement", "type": "water_leak", "severity": "critical"}


@pytest.fixture
def prefix(unique: str) -> str:
    return f"ha{unique}"


@pytest.fixture
def node(unique: str) -> str:
    return f"t{unique}"


@pytest.fixture
def ha_settings(make_settings: Callable[..., Settings], prefix: str) -> Settings:
    return make_settings(
        {
            "homeassistant": {"discovery": True, "discovery_prefix": prefix},
            "alerts": {"deduplication": {"window": 300}},
        }
    )


@pytest.fixture
async def ha(probe: Probe, prefix: str) -> Probe:
    assert probe._client is not None
    await probe._client.subscribe(f"{prefix}/#", qos=1)
    return probe


async def _expire(ha: Probe, settings: Settings, clock: FakeClock, alert_id: str) -> None:
    """Resolve the alert and let its retention end: its retained state is cleared."""
    await ha.publish(f"{ha.base}/alert/{alert_id}/resolve", b"")
    await ha.state(alert_id, lambda s: s["state"] == "resolved")
    mark = len(ha.seen)
    clock.advance(settings.alerts.retention[State.RESOLVED] + 1)
    await ha.wait_for(f"{ha.base}/alert/{alert_id}", empty, after=mark)


# -- 1. ghost entities -------------------------------------------------------------------


async def test_alert_removed_while_ha_away_is_removed_again_after_its_birth(
    start_service: StartService,
    ha_settings: Settings,
    ha: Probe,
    clock: FakeClock,
    prefix: str,
    node: str,
) -> None:
    """HA only deletes an entity whose empty config comes on a topic it discovered since
    it started: after its birth the gone alert is announced once more, then emptied."""
    running = await start_service(ha_settings, clock=clock)
    await ha.publish(f"{prefix}/status", b"online")
    gone = await new_alert(ha, **LEAK)
    topics = alert_config_topics(prefix, node, gone)
    for topic in topics:
        await ha.wait_for(topic, non_empty)

    await ha.publish(f"{prefix}/status", b"offline")  # HA's last will
    await _expire(ha, ha_settings, clock, gone)
    for topic in topics:
        await ha.wait_for(topic, empty)
    remembered = RemovedEntities(running.service.redis, running.service.keys, clock)
    assert await remembered.recall() == [gone]

    mark = len(ha.seen)
    await ha.publish(f"{prefix}/status", b"online")  # HA's birth
    for topic in topics:
        announced = await ha.wait_for(topic, non_empty, after=mark)
        assert gone in config(announced)["unique_id"]
        await ha.wait_for(topic, empty, after=ha.seen.index(announced) + 1)
    assert await remembered.recall() == []


async def test_alert_removed_while_ha_online_is_not_remembered(
    start_service: StartService,
    ha_settings: Settings,
    ha: Probe,
    clock: FakeClock,
    prefix: str,
    node: str,
) -> None:
    running = await start_service(ha_settings, clock=clock)
    await ha.publish(f"{prefix}/status", b"online")
    alert_id = await new_alert(ha, **LEAK)
    await ha.wait_for(alert_config_topics(prefix, node, alert_id)[0], non_empty)
    await _expire(ha, ha_settings, clock, alert_id)
    for topic in alert_config_topics(prefix, node, alert_id):
        await ha.wait_for(topic, empty)
    remembered = RemovedEntities(running.service.redis, running.service.keys, clock)
    assert await remembered.recall() == []


# -- 2. re-opened alerts -----------------------------------------------------------------


async def test_reopened_alert_reaches_home_assistant(
    start_service: StartService, ha_settings: Settings, ha: Probe, clock: FakeClock
) -> None:
    await start_service(ha_settings, clock=clock)
    alert_id = await new_alert(ha, **LEAK)
    await ha.alert(**LEAK, status="resolved")
    await ha.state(alert_id, lambda s: s["state"] == "resolved")
    clock.advance(60)  # within the dedup window: the same alert opens again
    await ha.alert(**LEAK, message="Water again")
    event = await ha.wait_for(f"{ha.base}/ha/event", lambda s: s.json()["event_type"] == "reopened")
    assert event.json()["id"] == alert_id
    assert event.json()["message"] == "Water again"
    kinds = [s.json()["event_type"] for s in ha.on(f"{ha.base}/ha/event")]
    assert kinds == ["created", "resolved", "reopened"]


# -- 3. needs attention, 4. resolve button, 7. open alerts in the summary ----------------


async def test_resolve_button_resolves(
    start_service: StartService, ha_settings: Settings, ha: Probe, prefix: str, node: str
) -> None:
    await start_service(ha_settings)
    alert_id = await new_alert(ha, **LEAK)
    resolve = config(await ha.wait_for(alert_config_topics(prefix, node, alert_id)[2], non_empty))
    await ha.publish(resolve["command_topic"], resolve["payload_press"])  # what HA does
    state = await ha.state(alert_id, lambda s: s["state"] == "resolved")
    assert state["resolved_by"] == "home_assistant"


async def test_summary_lists_open_alerts_for_a_dashboard(
    start_service: StartService, ha_settings: Settings, ha: Probe, clock: FakeClock
) -> None:
    await start_service(ha_settings, clock=clock)
    garage = await new_alert(
        ha, source="garage", type="door_open", severity="medium", message="Door open"
    )
    clock.advance(90)
    leak = await new_alert(ha, **LEAK, message="Water on the floor")
    await ha.publish(f"{ha.base}/alert/{garage}/ack", b"")
    summary = await ha.wait_for(
        f"{ha.base}/summary", lambda s: s.json()["acknowledged"] == 1 and s.json()["active"] == 1
    )
    listed = summary.json()["open_alerts"]
    # most urgent first, with what a dashboard shows
    assert [a["id"] for a in listed] == [leak, garage]
    assert listed[0] == {
        "id": leak,
        "name": "Basement water leak",
        "priority": "P1",
        "state": "active",
        "source": "basement",
        "type": "water_leak",
        "message": "Water on the floor",
        "first_seen": listed[0]["first_seen"],
        "age": 0,
    }
    assert listed[1]["state"] == "acknowledged"
    assert listed[1]["age"] == 90


async def test_summary_ages_move_while_alerts_are_open(
    start_service: StartService, ha_settings: Settings, ha: Probe, clock: FakeClock
) -> None:
    running = await start_service(ha_settings, clock=clock)
    running.service.publisher.summary_refresh = 0.2  # a minute in production
    await new_alert(ha, **LEAK)
    await ha.wait_for(f"{ha.base}/summary", lambda s: len(s.json()["open_alerts"]) == 1)
    clock.advance(600)
    summary = await ha.wait_for(
        f"{ha.base}/summary", lambda s: [a["age"] for a in s.json()["open_alerts"]] == [600]
    )
    assert summary.json()["active"] == 1


# -- 5. diagnostics -----------------------------------------------------------------------


async def test_diagnostics_topic(
    start_service: StartService, ha_settings: Settings, ha: Probe, mqtt_broker: MosquittoServer
) -> None:
    from homealert_mqtt import __version__  # noqa: PLC0415

    await start_service(ha_settings)
    first = await ha.wait_for(f"{ha.base}/diagnostics", non_empty)
    assert first.json() == {"version": __version__, "redis": "connected", "last_error": None}
    await ha.publish(f"{ha.base}/in", b"not json")
    report = await ha.wait_for(
        f"{ha.base}/diagnostics", lambda s: s.json()["last_error"] is not None
    )
    error = report.json()["last_error"]
    assert error["error"] == ha.errors()[0]["error"]
    assert error["at"].endswith("Z")
    retained = await retained_under(mqtt_broker.port, f"{ha.base}/diagnostics")
    assert json.loads(retained[f"{ha.base}/diagnostics"]) == report.json()


@pytest.mark.parametrize(
    ("http", "configured", "expected"),
    [
        ({"enabled": False}, None, None),
        (
            {"enabled": True, "host": "127.0.0.1", "port": 9466},
            None,
            "http://127.0.0.1:9466/healthz",
        ),
        ({"enabled": True, "host": "::1", "port": 9466}, None, "http://[::1]:9466/healthz"),
        ({"enabled": True}, "https://alerts.example.org/", "https://alerts.example.org/"),
    ],
)
def test_configuration_url(
    make_settings: Callable[..., Settings],
    http: dict[str, Any],
    configured: str | None,
    expected: str | None,
) -> None:
    settings = make_settings({"http": http, "homeassistant": {"configuration_url": configured}})
    assert configuration_url(settings) == expected


def test_configuration_url_of_a_wildcard_host_names_this_machine(
    make_settings: Callable[..., Settings],
) -> None:
    import socket  # noqa: PLC0415

    settings = make_settings({"http": {"enabled": True, "host": "0.0.0.0", "port": 9466}})  # noqa: S104
    assert configuration_url(settings) == f"http://{socket.gethostname()}:9466/healthz"


async def test_device_carries_version_and_configuration_url(
    start_service: StartService,
    make_settings: Callable[..., Settings],
    ha: Probe,
    prefix: str,
    node: str,
) -> None:
    from homealert_mqtt import __version__  # noqa: PLC0415
    from homealert_mqtt.homeassistant.discovery import service_config_topic  # noqa: PLC0415

    settings = make_settings(
        {
            "homeassistant": {
                "discovery": True,
                "discovery_prefix": prefix,
                "configuration_url": "http://127.0.0.1:9466/healthz",
            }
        }
    )
    await start_service(settings)
    device = config(await ha.wait_for(service_config_topic(prefix, node), non_empty))["device"]
    assert device["sw_version"] == __version__
    assert device["configuration_url"] == "http://127.0.0.1:9466/healthz"


def test_configuration_url_must_be_a_web_address(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("homeassistant:\n  configuration_url: ftp://nas/alerts\n")
    with pytest.raises(ConfigError, match=r"homeassistant\.configuration_url: expected a http"):
        load_config(path, environ={})
