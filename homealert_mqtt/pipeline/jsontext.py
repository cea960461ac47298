"""Compact JSON text on the per-alert path, without the json module's per-call setup.

`json.dumps` with any option builds a new JSONEncoder, and `JSONEncoder.encode` builds a
new C encoder, on every call: about 1-2 µs of the 2-6 µs one of our payloads takes, paid
several times per alert. The C encoder keeps no state between calls when it does not
check for circular references, so one is built here and reused.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable, Iterable
from typing import Any


def _chunk_encoder() -> Callable[[Any], Iterable[str]]:
    # No circular reference check: what we encode was parsed from JSON or built from
    # dataclasses, so it cannot refer to itself.
    options = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False)
    make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if make_encoder is None:  # an interpreter without the _json accelerator
        return lambda data: options.iterencode(data, _one_shot=True)
    encoder = make_encoder(
        None,  # the markers of the circular reference check
        options.default,
        json.encoder.encode_basestring,
        None,  # indent
        options.key_separator,
        options.item_separator,
        options.sort_keys,
        options.skipkeys,
        options.allow_nan,
    )
    return lambda data: encoder(data, 0)


_chunks = _chunk_encoder()


def compact(data: Any) -> str:
    """`json.dumps(data, separators=(",", ":"), ensure_ascii=False)`, byte for byte."""
    return "".join(_chunks(data))
