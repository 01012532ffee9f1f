"""Kafka-facing entrypoints: the settlement consumer and the reference engine."""
