"""Noise control: matchers, silences (maintenance windows, snooze) and the gate that keeps
the escalation engine from paging for what is quiet."""
