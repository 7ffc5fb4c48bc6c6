"""HTTP: the /v1 API, ingest, widget readers, the visitor chat's routes, the dashboard, static files
and error answers.
"""
