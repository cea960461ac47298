"""Silences in Home Assistant: a silence is a button that expires it, the per-alert
"Snooze 1 h" button snoozes, and the alert's attributes say why it is quiet."""

from __future__ import annotations

from tests.homeassistant.test_service_e2e import (  # noqa: F401 - fixtures, by name
    StartService,
    ha,
    ha_settings,
    new_alert,
    non_empty,
    prefix,
    retained_under,
)
from tests.probe import Probe
from tests.servers import MosquittoServer


async def test_a_silence_is_an_entity_that_expires_it(
    start_service: StartService,
    ha_settings,  # noqa: F811
    ha: Probe,  # noqa: F811
    prefix: str,  # noqa: F811
    mqtt_broker: MosquittoServer,
) -> None:
    await start_service(ha_settings)
    await ha.publish(
        f"{ha.base}/silence/work/set",
        {"matchers": {"source": "basement"}, "duration": 600, "comment": "boiler"},
    )
    topic = f"{prefix}/button/{ha.base}/silence_work/config"
    button = (await ha.wait_for(topic, non_empty)).json()
    assert button["command_topic"] == f"{ha.base}/silence/work/expire"
    assert button["json_attributes_topic"] == f"{ha.base}/silence/work"
    # Pressing it (what HA publishes) ends the silence; the entity goes with it.
    await ha.publish(button["command_topic"], button["payload_press"])
    await ha.wait_for(topic, lambda s: s.payload == b"")
    await ha.wait_for(f"{ha.base}/silence/work", lambda s: s.payload == b"")
    assert topic not in await retained_under(mqtt_broker.port, f"{prefix}/#")


async def test_the_snooze_button_snoozes_and_the_alert_says_why_it_is_quiet(
    start_service: StartService,
    ha_settings,  # noqa: F811
    ha: Probe,  # noqa: F811
    prefix: str,  # noqa: F811
) -> None:
    await start_service(ha_settings)
    alert_id = await new_alert(ha)
    topic = f"{prefix}/button/{ha.base}/alert_{alert_id}_snooze/config"
    snooze = (await ha.wait_for(topic, non_empty)).json()
    await ha.publish(snooze["command_topic"], snooze["payload_press"])
    silence = await ha.wait_for(f"{ha.base}/silence/snooze-{alert_id}", non_empty)
    assert silence.json()["created_by"] == "home_assistant"
    await ha.state(alert_id, lambda s: s["silenced_by"] == [f"snooze-{alert_id}"])
    # The problem sensor's attributes are the alert's state, `silenced_by` among them.
    sensor_topic = f"{prefix}/binary_sensor/{ha.base}/alert_{alert_id}/config"
    sensor = (await ha.wait_for(sensor_topic, non_empty)).json()
    assert sensor["json_attributes_topic"] == f"{ha.base}/alert/{alert_id}"
