"""`alerts.escalation.lease`: one typed setting for every lease of the escalation engine."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from homealert_mqtt.config import Settings
from homealert_mqtt.config.errors import ConfigError
from homealert_mqtt.escalation.delivery import DEFAULT_LEASE_S, Leases


def test_default_lease_is_90_s_and_keys_expire_before_their_batch_comes_back(
    make_settings: Callable[..., Settings],
) -> None:
    assert make_settings().alerts.escalation.lease == DEFAULT_LEASE_S == 90
    leases = Leases()
    assert (leases.claim_ms, leases.key_ms, leases.retry_deadline) == (90_000, 60_000, 45.0)


@pytest.mark.parametrize("seconds", [2, 4, 90, 3600])
def test_a_delivery_ends_before_its_key_and_the_key_before_its_batch(seconds: int) -> None:
    leases = Leases.from_seconds(seconds)
    assert leases.retry_deadline * 1000 < leases.key_ms < leases.claim_ms


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("90", "alerts.escalation.lease: expected int, got '90'"),
        (1, "alerts.escalation.lease: must be at least 2, got 1"),
        (7200, "alerts.escalation.lease: must be at most 3600, got 7200"),
    ],
)
def test_lease_is_checked(
    make_settings: Callable[..., Settings], value: object, problem: str
) -> None:
    with pytest.raises(ConfigError) as err:
        make_settings({"alerts": {"escalation": {"lease": value}}})
    assert problem in str(err.value)
