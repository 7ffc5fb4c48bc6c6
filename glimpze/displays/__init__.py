"""Screens (`scr_…`: feeds laid out on a canvas, read by picture URL and kiosk page) and the e-ink
devices (`dev_…`) that show them over the TRMNL firmware's protocol."""
