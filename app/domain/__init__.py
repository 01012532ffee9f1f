"""The domain model: no I/O lives here."""
