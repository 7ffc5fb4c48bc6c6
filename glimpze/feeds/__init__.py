"""Feeds: events in (ingest, quotas, idempotency, uploads) and widgets out (state, PNGs, stored images,
tiles), and their retention.
"""
