"""The service layer: orchestrates the domain and the ports."""
