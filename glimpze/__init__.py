"""Glimpze: live widgets, push, approvals and signed webhooks from any HTTP call."""

__version__ = "0.1.0"
