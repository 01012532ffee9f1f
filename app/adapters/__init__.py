"""Adapters: one implementation of a port per external system."""
