"""Every Redis key, in one place.

All keys share one hash tag (`{<key_prefix>}`), so a script that touches several of them
stays in one Redis Cluster slot. The Lua scripts build the same names from the prefix
passed as KEYS[1] (see lua/_lib.lua, `k()`): change a name here and there together.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str  # e.g. "{homealert}"

    @classmethod
    def for_prefix(cls, key_prefix: str) -> Keys:
        return cls("{" + key_prefix + "}")

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def alert(self, alert_id: str) -> str:
        return self._k("alert", alert_id)  # hash: the alert's fields

    def fingerprint(self, fp: str) -> str:
        return self._k("fp", fp)  # hash: id (latest alert), occ (occurrences so far)

    @property
    def open(self) -> str:
        return self._k("open")  # zset: open alert ids by first_seen

    @property
    def retention(self) -> str:
        return self._k("retention")  # zset: every stored alert id by the time it expires

    @property
    def acked(self) -> str:
        return self._k("acked")  # set: open and acknowledged

    @property
    def escalated(self) -> str:
        return self._k("escalated")  # set: state escalated

    def by_priority(self, priority: str) -> str:
        return self._k("prio", priority)  # set: open alerts of one priority

    def group(self, group_id: str) -> str:
        return self._k("group", group_id)  # hash: key, created, updated, ...

    def group_members(self, group_id: str) -> str:
        return self._k("gmembers", group_id)  # zset: alert ids by join time

    @property
    def groups(self) -> str:
        return self._k("groups")  # zset: group ids by creation

    def group_key(self, key_hash: str) -> str:
        return self._k("gkey", key_hash)  # hash: gid (group taking alerts), seq

    @property
    def clear_pending(self) -> str:
        return self._k("clear")  # set: "alert:<id>" / "group:<id>" whose topics await clearing

    @property
    def ha_removed(self) -> str:
        # zset: alert ids whose Home Assistant entities were removed while HA may not
        # have been listening, by when (ms); see store/ha_removed.py
        return self._k("ha_removed")

    def seen(self, client_session: str) -> str:
        # hash: packet id -> digest of the last message, per "<client id>.<session>"
        return self._k("seen", client_session)

    def session(self, client_id: str) -> str:
        return self._k("session", client_id)  # counter: this client id's broker sessions

    def history(self, source: str) -> str:
        return self._k("history", source)  # stream: per-source alert events

    @property
    def history_sources(self) -> str:
        return self._k("history_sources")  # set: sources with history

    @property
    def history_last(self) -> str:
        return self._k("history_last")  # hash: source -> id of the last entry of its history

    @property
    def timers(self) -> str:
        return self._k("timers")  # zset: "<alert id>|<epoch>|<level>" by due time

    # -- escalation (store/lua/schedule.lua, claim_flush.lua, complete_flush.lua)
    @property
    def flushes(self) -> str:
        return self._k("flushes")  # zset: "<group>|<level>.<round>" by when to notify

    def pending(self, flush_key: str) -> str:
        return self._k("pend", flush_key)  # set: timer members waiting for that flush

    def claimed(self, token: str) -> str:
        return self._k("claimed", token)  # string with TTL: a claim_flush reply, to repeat

    @property
    def flush_owners(self) -> str:
        return self._k("flowner")  # hash: claimed flush key -> the claiming incarnation

    @property
    def incarnations(self) -> str:
        return self._k("incarnation")  # hash: client id -> its running incarnation

    @property
    def dead(self) -> str:
        return self._k("dead")  # zset: incarnations known dead, by when (ms)

    def group_sent(self, group_key: str) -> str:
        return self._k("gsent", group_key)  # hash: "<level>.<round>" -> last notified (ms)

    def delivery(self, *parts: str) -> str:
        return self._k("sent", *parts)  # string with TTL: pending | sent | failed | deferred

    def attempts(self, alert_id: str) -> str:
        return self._k("attempts", alert_id)  # list: JSON delivery attempts, newest first

    def paged(self, alert_id: str) -> str:
        return self._k("paged", alert_id)  # set: "<channel>\x1f<recipient>" that were paged

    @property
    def notices(self) -> str:
        return self._k("notices")  # zset: "<id>|<epoch>" resolved notices to send

    def rate(self, channel: str, recipient_hash: str, window: int) -> str:
        return self._k("rl", channel, recipient_hash, str(window))  # counter with TTL

    @property
    def deferred_queue(self) -> str:
        return self._k("rlq")  # zset: "<channel>\x1f<recipient>" by when its window reopens

    def deferred(self, channel: str, recipient_hash: str) -> str:
        return self._k("rlpend", channel, recipient_hash)  # set: "<id>|<epoch>" held back

    # -- presence (store/lua/presence.lua)
    @property
    def presence(self) -> str:
        return self._k("presence")  # hash: "<d|h>:<name>" -> JSON record (device, heartbeat)

    @property
    def presence_due(self) -> str:
        return self._k("presence_due")  # zset: "<d|h>:<name>" by when to look at it again

    # -- SMS reply codes and replies (store/lua/sms_code.lua, sms_reply.lua)
    @property
    def sms_codes(self) -> str:
        return self._k("sms_codes")  # hash: "c:<code>" -> alert id, "a:<alert id>" -> code

    @property
    def sms_last(self) -> str:
        return self._k("sms_last")  # hash: number -> JSON {ids, at} last paged to it by SMS

    @property
    def sms_replies(self) -> str:
        return self._k("sms_replies")  # zset: reply message sids applied, by when

    def sms_claim(self, sid: str) -> str:
        return self._k("sms_claim", sid)  # string with TTL: a reply being applied

    def replica(self, client_id: str) -> str:
        return self._k("replica", client_id)  # hash with TTL: a running replica's health

    # -- noise control (store/lua/_noise.lua, silence_*.lua)
    def silence(self, silence_id: str) -> str:
        return self._k("silence", silence_id)  # hash: id, matchers, starts_at, ends_at, ...

    def silence_members(self, silence_id: str) -> str:
        return self._k("smem", silence_id)  # set: alert ids the silence is on

    @property
    def silenced(self) -> str:
        return self._k("silenced")  # set: alerts with at least one silence on

    @property
    def silences(self) -> str:
        return self._k("silences")  # zset: silence ids by ends_at

    @property
    def silence_due(self) -> str:
        return self._k("silence_due")  # zset: silence ids by their next start or end

    @property
    def silence_version(self) -> str:
        return self._k("silence_ver")  # counter: bumped by every change of a silence

    @property
    def silence_clear(self) -> str:
        return self._k("silence_clear")  # set: ended silences whose topic awaits clearing

    def window_skip(self, silence_id: str) -> str:
        return self._k(
            "wskip", silence_id
        )  # string with TTL: end of a schedule window expired early

    @property
    def inhibit_sources(self) -> str:
        return self._k("inhsrc")  # set: open alerts that are the source of an inhibit rule

    def inhibit_targets(self, source_id: str) -> str:
        return self._k("inhtgt", source_id)  # set: the alerts a source inhibits

    @property
    def inhibit_version(self) -> str:
        return self._k("inh_ver")  # counter: bumped when a source is recorded or released

    @property
    def auto_resolve(self) -> str:
        return self._k("autores")  # zset: alert ids by when they resolve themselves

    def flaps(self, alert_id: str) -> str:
        return self._k("flaps", alert_id)  # zset with TTL: an alert's recent re-openings

    @property
    def flap_queue(self) -> str:
        return self._k("flapq")  # zset: flapping alert ids by when their flap ends
