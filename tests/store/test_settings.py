"""The settings the scripts get (AlertStore.lua_settings) read back as configured."""

from __future__ import annotations

import json
from typing import Any

import pytest

from homealert_mqtt.models import State


async def test_the_scripts_read_the_settings_as_configured(kit_factory: Any) -> None:
    extra = {
        "alerts": {
            "retention": {s.value: 1000 + i for i, s in enumerate(State)},
            "deduplication": {"enabled": False, "window": 7},
            "grouping": {"window": 11, "max_group_size": 13},
            "history": {"max_entries": 17, "max_age": 19},
        }
    }
    async with kit_factory(extra) as kit:
        read = json.loads(
            await kit.lua("return cjson.encode(parse_settings(ARGV[1]))", kit.store.lua_settings)
        )
    assert read == {
        "retention": {s.value: str((1000 + i) * 1000) for i, s in enumerate(State)},
        "dedup": False,
        "dedup_window": "7000",
        "group_window": "11000",
        "group_max": "13",
        "hist_max": "17",
        "hist_age": "19000",
    }


async def test_settings_out_of_shape_are_refused(kit: Any) -> None:
    with pytest.raises(Exception, match="bad settings"):
        await kit.lua("return parse_settings(ARGV[1])", kit.store.lua_settings + " 1")
