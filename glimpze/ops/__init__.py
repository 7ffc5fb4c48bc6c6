"""Running Glimpze as a process: the HTTP server and its limits, TLS, the data directory, backups and
checks, periodic jobs, logs and metrics.
"""
