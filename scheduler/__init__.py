"""The APScheduler entrypoint for the recovery scanner."""
