"""Displays: screens (`scr_…`, feeds laid out on a canvas) drawn for walls, kiosks and e-ink
devices, and the devices (`dev_…`) that show them over the TRMNL firmware's protocol.
"""
