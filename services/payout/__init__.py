"""Payout: loss verification, payout decisions, adjuster approvals and exactly-once payment."""
