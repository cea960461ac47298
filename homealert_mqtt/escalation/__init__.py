"""Escalation: timers in Redis, per-group batches, and delivery to the channels.

ingest.lua sets a level-0 timer -> schedule.lua batches due timers per group and
level -> claim_flush.lua leases a batch -> plan.py picks channels and recipients ->
delivery.py sends (idempotent, rate-limited, retried) -> complete_flush.lua moves the
alerts on (active / escalated) and sets the next timer.
"""
