"""Displays: screens (layouts of feeds on a canvas) drawn for walls, kiosks and e-ink devices,
and the devices that show them.
"""
