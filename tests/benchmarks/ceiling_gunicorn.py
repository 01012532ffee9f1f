"""gunicorn settings of the ceiling: the service's shape (gthread, 2 workers x 8 threads, access log on)."""

worker_class = "gthread"
workers = 2
threads = 8
timeout = 30
accesslog = "-"
