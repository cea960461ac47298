"""The alert's way in: validate -> fingerprint -> prioritise -> store (dedup, group) -> publish.

`ingest.Ingest` lists the chain; each step is a module with one job.
"""
