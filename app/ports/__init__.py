"""Abstract ports: what the service layer needs from the outside world."""
