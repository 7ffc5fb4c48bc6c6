"""Approvals and the push notifications that carry them: targets (Apprise, Web Push), quiet hours and
signed action links.
"""
