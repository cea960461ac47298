"""Notification channels and the templates they render."""
