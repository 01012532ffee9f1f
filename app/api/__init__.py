"""HTTP entrypoints: thin blueprints over the service layer."""
