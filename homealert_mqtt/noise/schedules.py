"""Recurring maintenance windows from the config (`alerts.silences.schedules`).

A window is a silence `schedule:<name>` while it is on: the service creates it when the
window starts (any replica; creating it twice is one silence) with the window's end as
its end, so that ending it is the same Redis timer as every silence's. A window may cross
midnight; it belongs to the day it starts on. Times are in `alerts.timezone`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from homealert_mqtt.noise.matchers import Matcher
from homealert_mqtt.noise.silences import SCHEDULE_PREFIX, Silence

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


@dataclass(frozen=True, slots=True)
class Schedule:
    name: str
    matcher: Matcher
    days: frozenset[int]  # 0 = Monday
    start: time
    end: time

    @property
    def silence_id(self) -> str:
        return SCHEDULE_PREFIX + self.name

    def window_at(self, now_ms: int, zone: ZoneInfo) -> tuple[int, int] | None:
        """The window (start, end in epoch ms) that is on at `now_ms`, if any."""
        today = datetime.fromtimestamp(now_ms / 1000, zone).date()
        # Only a window that began today or yesterday can be on (none is over 24 h).
        for day in (today - timedelta(days=1), today):
            if day.weekday() not in self.days:
                continue
            start, end = self._window(day, zone)
            if start <= now_ms < end:
                return start, end
        return None

    def _window(self, day: date, zone: ZoneInfo) -> tuple[int, int]:
        end_day = day + timedelta(days=1) if self.end <= self.start else day
        start = datetime.combine(day, self.start, zone)
        end = datetime.combine(end_day, self.end, zone)
        return int(start.timestamp() * 1000), int(end.timestamp() * 1000)

    def silence(self, window: tuple[int, int]) -> Silence:
        return Silence(
            self.silence_id, self.matcher, window[0], window[1], "schedule", f"schedule {self.name}"
        )


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A recipient group's quiet hours (noise/quiet_hours.py), every day, in the zone."""

    start: time
    end: time
    except_: frozenset[str] = frozenset()  # priorities that break through ("P1")

    def until(self, now: int, zone: ZoneInfo) -> int | None:
        """The end (ms) of the quiet hours on at `now`, or None."""
        window = Schedule("quiet", _ANY, _EVERY_DAY, self.start, self.end).window_at(now, zone)
        return window[1] if window else None


_ANY = Matcher((("id", "*"),))
_EVERY_DAY = frozenset(range(7))


def parse_clock(value: Any) -> time:
    if not isinstance(value, str) or not (match := _CLOCK.match(value)):
        raise ValueError(f"expected a time HH:MM from 00:00 to 23:59, got {value!r}")
    return time(int(match[1]), int(match[2]))


def parse_day(value: Any) -> int:
    if not isinstance(value, str) or value.lower() not in DAYS:
        raise ValueError(f"expected one of {', '.join(DAYS)}, got {value!r}")
    return DAYS.index(value.lower())


def zone(name: str | None) -> ZoneInfo:
    """`alerts.timezone`, or the system's zone when it is null."""
    if name is None:
        local = datetime.now().astimezone().tzinfo
        key = getattr(local, "key", None)
        if key:
            return ZoneInfo(key)
        try:
            return ZoneInfo("localtime")
        except (ZoneInfoNotFoundError, ValueError):
            return ZoneInfo("UTC")
    return ZoneInfo(name)
