"""Intake: policies, first notice of loss, and each incident's status timeline."""
