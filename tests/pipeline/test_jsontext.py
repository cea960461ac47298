"""compact(): the bytes json.dumps makes, with or without the C accelerator."""

from __future__ import annotations

import json
import json.encoder
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homealert_mqtt.pipeline import jsontext
from homealert_mqtt.pipeline.jsontext import compact

json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
json_values = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=30,
)


def reference(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_same_text_as_json_dumps(data: Any) -> None:
    assert compact(data) == reference(data)


def test_same_text_without_the_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json.encoder, "c_make_encoder", None)
    chunks = jsontext._chunk_encoder()
    data = {"a": [1, 2.5, None, True, 'é\n"', {"b": float("nan")}], "c": {}}
    assert "".join(chunks(data)) == reference(data)


def test_errors_leave_no_state_behind() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        compact({"a": [object()]})
    data = {"a": [{"b": 1}]}
    assert compact(data) == reference(data)
    assert compact(data) == reference(data)
