"""Devices: profiles and features, reference measurements, real measurement backends.

Nothing here imports the web layer (``app``).
"""
