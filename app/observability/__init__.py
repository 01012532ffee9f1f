"""Metrics, the log context and trace ids: what operators see of the service."""
