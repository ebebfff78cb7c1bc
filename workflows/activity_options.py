"""How long and how often the interpreter's activities may try: one place,
so the side effects, the snapshots, the step records and the run's end retry
alike."""

from datetime import timedelta

from temporalio.common import RetryPolicy

ACTIVITY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
# One attempt of a side effect (send, coupon, tags, begin, end).
SIDE_EFFECT_TIMEOUT = timedelta(seconds=30)
# How long a send or coupon goes on retrying before the run records a failure:
# past the engine's longest send retry deadline (24h,
# ``engine.settings.MAX_SEND_RETRY_SECONDS``), so the engine decides first
# and records why; this is the bound when the engine cannot answer at all.
SIDE_EFFECT_DEADLINE = timedelta(hours=25)
# One attempt of a local read or write (snapshot, step records).
LOCAL_TIMEOUT = timedelta(seconds=10)
