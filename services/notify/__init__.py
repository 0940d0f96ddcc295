"""Notify: signed webhooks, email and an in-app feed for everyone involved."""
