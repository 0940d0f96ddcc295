"""Triage: grades incidents and dispatches response jobs to panel vendors."""
