"""Presence: devices that go silent (availability topics) and jobs that stop checking in
(heartbeats). Deadlines live in Redis (store/presence_store.py); what they raise goes
through the normal ingest path, so dedup, priorities and escalation apply."""
