"""The `homealert-mqtt` command, run as a real process against the test's broker and Redis."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from homealert_mqtt.config import ConfigError, load_config
from tests.probe import Probe
from tests.waits import ROOT, subprocess_env

SUBCOMMANDS = {
    "run": ["--config", "--embedded", "--data-dir"],
    "check-config": ["--config"],
    "alerts": ["--all", "--json"],
    "ack": ["--by", "--note", "id"],
    "resolve": ["--by", "id"],
    "history": ["--source", "--limit"],
    "health": ["--max-age"],
    "silence": ["add", "list", "expire"],
    "test-alert": ["--at", "--json", "alert"],
}


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


async def cli(*args: str, **env: str) -> Result:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "homealert_mqtt",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=subprocess_env(**env),
        cwd=ROOT,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def test_help_of_every_subcommand() -> None:
    results = await asyncio.gather(cli("--help"), *(cli(name, "--help") for name in SUBCOMMANDS))
    top, *subs = results
    assert top.code == 0
    for name in SUBCOMMANDS:
        assert name in top.out
    for (name, options), result in zip(SUBCOMMANDS.items(), subs, strict=True):
        assert result.code == 0, result.text
        assert result.out.startswith(f"usage: homealert-mqtt {name}"), result.out
        for option in options:
            assert option in result.out, (name, option)
        assert result.err == ""


async def test_alerts_ack_resolve_history_health(
    tmp_path: Path, make_settings, start_service, probe: Probe
) -> None:
    settings = make_settings()
    config = str(tmp_path / "config.yaml")
    running = await start_service(settings)
    await probe.alert(source="basement", type="water_leak", severity="critical", message="Wet")
    await probe.alert(source="nas", type="disk_space", severity="low", message="81% full")
    created = await probe.wait_events("created", 2)
    ids = {e["source"]: e["id"] for e in created}

    table = await cli("alerts", "--config", config)
    assert table.code == 0, table.text
    header, *rows = table.out.splitlines()
    assert header.split() == ["ID", "STATE", "PRIO", "COUNT", "AGE", "MESSAGE"]
    assert [row.split()[0] for row in rows] == [ids["basement"], ids["nas"]]  # P1 first
    assert rows[0].split()[1] in ("new", "active")  # the escalation engine moves it on
    assert rows[0].split()[2:4] == ["P1", "1"]
    assert rows[0].endswith("Wet")

    listed = await cli("alerts", "--json", "--config", config)
    assert listed.code == 0, listed.text
    states = json.loads(listed.out)
    assert [(s["id"], s["priority"], s["message"]) for s in states] == [
        (ids["basement"], "P1", "Wet"),
        (ids["nas"], "P4", "81% full"),
    ]

    ack = await cli("ack", ids["basement"], "--by", "anna", "--note", "on it", "--config", config)
    assert ack.code == 0, ack.text
    state = await probe.state(ids["basement"], lambda s: s["state"] == "acknowledged")
    assert (state["acknowledged_by"], state["ack_note"]) == ("anna", "on it")
    resolve = await cli("resolve", ids["nas"], "--config", config)
    assert resolve.code == 0, resolve.text
    state = await probe.state(ids["nas"], lambda s: s["state"] == "resolved")
    assert state["resolved_by"] is None

    open_only = json.loads((await cli("alerts", "--json", "--config", config)).out)
    assert [s["id"] for s in open_only] == [ids["basement"]]
    everything = json.loads((await cli("alerts", "--all", "--json", "--config", config)).out)
    assert [(s["id"], s["state"]) for s in everything] == [
        (ids["basement"], "acknowledged"),
        (ids["nas"], "resolved"),
    ]

    history = await cli("history", "--config", config)
    assert history.code == 0, history.text
    lines = history.out.splitlines()
    assert [line.split()[3] for line in lines] == ["resolved", "acknowledged", "created", "created"]
    nas = (await cli("history", "--source", "nas", "--config", config)).out.splitlines()
    assert [(line.split()[2], line.split()[3]) for line in nas] == [
        ("nas", "resolved"),
        ("nas", "created"),
    ]
    assert all(ids["nas"] in line for line in nas)
    assert (await cli("history", "--source", "nobody", "--config", config)).out == "no history\n"

    # `health` follows the service: healthy while it runs, not once it stopped.
    health = await cli("health", "--config", config)
    assert (health.code, health.out.split(":")[0]) == (0, "healthy"), health.text
    await running.stop()
    health = await cli("health", "--config", config)
    assert health.code == 1, health.text
    assert "no heartbeat" in health.out


async def test_commands_and_health_without_a_service(tmp_path: Path, make_settings) -> None:
    make_settings()
    config = str(tmp_path / "config.yaml")
    nobody = await cli("health", "--config", config)
    assert (nobody.code, nobody.out.startswith("unhealthy: no heartbeat")) == (1, True)
    dead_redis = await cli(
        "health", "--config", config, HOMEALERT_REDIS_URL="redis://:hunter2@127.0.0.1:9/0"
    )
    assert dead_redis.code == 1
    assert "unreachable" in dead_redis.out
    assert "hunter2" not in dead_redis.text
    dead_broker = await cli(
        "ack", "x", "--config", config, HOMEALERT_MQTT_URL="mqtt://u:hunter2@127.0.0.1:9"
    )
    assert dead_broker.code == 1
    assert "cannot reach the broker at mqtt://127.0.0.1:9" in dead_broker.out
    assert "hunter2" not in dead_broker.text
    assert "Traceback" not in dead_broker.text + dead_redis.text


# -- check-config ------------------------------------------------------------------------

BAD_CONFIGS = {
    "bad yaml": ("alerts: [1, 2\nmqtt: {", None, ["invalid YAML", "line"]),
    "bad types": (
        {"alerts": {"grouping": {"window": "five", "enabled": "yes"}}, "mqtt": {"keepalive": 1}},
        None,
        [
            "alerts.grouping.window: expected int, got 'five'",
            "alerts.grouping.enabled: expected true or false, got 'yes'",
            "mqtt.keepalive: must be at least 5, got 1",
        ],
    ),
    "unknown keys": (
        {"alerts": {"grouping": {"windw": 5}}, "mqqt": {}, "channels": {"pager": {}}},
        None,
        ["alerts.grouping.windw: unknown key", "mqqt: unknown key", "channels.pager: unknown"],
    ),
    "references and types together": (
        {
            "alerts": {
                "history": {"max_entries": "many"},
                "escalation": {
                    "policies": {
                        "p1": [{"delay": 0, "channels": ["email", "pager"], "groups": ["oncal"]}],
                        "p2": {"levels": [{"delay": 60, "channels": ["sms"], "groups": ["x"]}]},
                    }
                },
            }
        },
        None,
        [
            "alerts.history.max_entries: expected int, got 'many'",
            "alerts.escalation.policies.p1[0].channels[1]: unknown channel 'pager'",
            "alerts.escalation.policies.p1[0].groups[0]: unknown recipient group 'oncal'",
            "alerts.escalation.policies.p2.levels[0].groups[0]: unknown recipient group 'x'",
        ],
    ),
    "missing secrets file": (
        "channels:\n  email:\n    password: !secret smtp_password\n",
        None,
        ["!secret", "secrets.yaml not found"],
    ),
    "missing secret": (
        "channels:\n  email:\n    password: !secret smtp_password\n",
        "other: x\n",
        ["!secret smtp_password: not in", "secrets.yaml"],
    ),
    "env var without default": (
        "mqtt:\n  url: !env_var HOMEALERT_TEST_UNSET_URL\n",
        None,
        ["!env_var HOMEALERT_TEST_UNSET_URL: not set and no default given"],
    ),
    "not a mapping": ("- just\n- a list\n", None, ["expected a mapping at the top level"]),
}


def write_config(folder: Path, content: object, secrets: str | None) -> Path:
    folder.mkdir()
    path = folder / "homealert.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    if secrets is not None:
        (folder / "secrets.yaml").write_text(secrets)
    return path


async def test_check_config_lists_every_problem_without_a_traceback(tmp_path: Path) -> None:
    paths = {
        name: write_config(tmp_path / f"c{i}", content, secrets)
        for i, (name, (content, secrets, _)) in enumerate(BAD_CONFIGS.items())
    }
    results = await asyncio.gather(
        *(cli("check-config", "--config", str(p)) for p in paths.values())
    )
    for (name, (_, _, expected)), result in zip(BAD_CONFIGS.items(), results, strict=True):
        assert result.code == 1, (name, result.text)
        assert "Traceback" not in result.text, (name, result.text)
        assert result.out == "", name
        for text in expected:
            assert text in result.err, (name, text, result.err)
    problems = results[list(BAD_CONFIGS).index("references and types together")].err
    assert problems.splitlines()[0].endswith(": 4 problem(s)")


async def test_check_config_ok_secrets_env_vars_and_overrides(tmp_path: Path) -> None:
    good = write_config(
        tmp_path / "good",
        "mqtt:\n"
        "  url: !env_var HOMEALERT_TEST_BROKER mqtt://127.0.0.1:1999\n"
        "  password: !secret broker_password\n"
        "redis:\n  url: redis://127.0.0.1:6000/2\n",
        "broker_password: s3cret-broker\n",
    )
    default = await cli("check-config", "--config", str(good))
    assert default.code == 0, default.text
    assert "broker mqtt://127.0.0.1:1999, Redis redis://127.0.0.1:6000/2" in default.out
    from_env = await cli(
        "check-config", "--config", str(good), HOMEALERT_TEST_BROKER="mqtts://10.0.0.1:8883"
    )
    assert "broker mqtts://10.0.0.1:8883" in from_env.out, from_env.text
    overridden = await cli(
        "check-config",
        "--config",
        str(good),
        HOMEALERT_MQTT_URL="mqtt://svc:pa55word@127.0.0.1:2883",
        HOMEALERT_REDIS_URL="redis://:r3dis-pass@127.0.0.1:7000/3",
    )
    assert overridden.code == 0, overridden.text
    assert "broker mqtt://127.0.0.1:2883, Redis redis://127.0.0.1:7000/3" in overridden.out
    for secret in ("pa55word", "r3dis-pass", "s3cret-broker"):
        assert secret not in overridden.text + default.text
    no_file = await cli("check-config")
    assert (no_file.code, no_file.out.startswith("built-in defaults: OK")) == (0, True)


def test_environment_beats_the_file(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "c",
        {"mqtt": {"url": "mqtt://file:1111"}, "redis": {"url": "redis://file:2222/0"}},
        None,
    )
    settings = load_config(
        path,
        environ={
            "HOMEALERT_MQTT_URL": "mqtts://user:p%40ss@127.0.0.1:8884",
            "HOMEALERT_REDIS_URL": "redis://127.0.0.1:6380/5",
        },
    )
    mqtt = settings.mqtt
    assert (mqtt.host, mqtt.port, mqtt.username, mqtt.password) == (
        "127.0.0.1",
        8884,
        "user",
        "p@ss",
    )
    assert mqtt.tls.enabled
    assert settings.redis.url == "redis://127.0.0.1:6380/5"
    assert "p@ss" not in repr(settings)
    file_only = load_config(path, environ={})
    assert (file_only.mqtt.host, file_only.redis.url) == ("file", "redis://file:2222/0")


async def test_recipient_groups_from_the_file_replace_the_defaults(tmp_path: Path) -> None:
    family = {"family": {"email": ["us@example.org"], "sms": ["+4912345"]}}
    policies = {
        name: [{"delay": 0, "channels": ["email", "sms"], "groups": ["family"]}]
        for name in ("p1", "p2", "p3", "default")
    }
    ok = write_config(
        tmp_path / "ok",
        {"recipients": {"groups": family}, "alerts": {"escalation": {"policies": policies}}},
        None,
    )
    assert load_config(ok, environ={}).recipients == {
        "family": {"email": ("us@example.org",), "sms": ("+4912345",)}
    }
    # The default policies still page oncall, manager and director: gone with the groups.
    only_groups = write_config(tmp_path / "only", {"recipients": {"groups": family}}, None)
    result = await cli("check-config", "--config", str(only_groups))
    assert result.code == 1
    for group in ("oncall", "manager", "director"):
        assert f"unknown recipient group {group!r}" in result.err
    assert (await cli("check-config", "--config", str(ok))).code == 0


@pytest.mark.parametrize("value", ["42", "'text'", "null"])
def test_env_var_default_is_yaml(tmp_path: Path, value: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"mqtt:\n  client_id: !env_var HOMEALERT_TEST_UNSET {value}\n")
    if value == "42":
        with pytest.raises(ConfigError, match=r"mqtt\.client_id"):
            load_config(path, environ={})
    else:
        expected = "text" if value != "null" else None
        client_id = load_config(path, environ={}).mqtt.client_id
        assert client_id == expected or (expected is None and client_id.startswith("homealert-"))
