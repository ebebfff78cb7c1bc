"""The composition root: the only place that wires ``workflows/`` (the
interpreter, no I/O) to ``engine/`` (activities, store, channels) — the
Temporal worker. ``api/`` starts it; nothing below imports it.
"""
