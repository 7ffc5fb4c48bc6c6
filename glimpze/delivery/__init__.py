"""The event pipe out: outgoing events, webhooks and approval callbacks, signed and sent through the
SSRF guard with retries.
"""
