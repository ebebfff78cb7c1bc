"""How long and how often the interpreter's activities may try.

These values are part of every recorded activity command's attributes (not of
what replay compares), so changing them needs no patch; they are kept in one
place so the effects, the records and the run's end retry alike.
"""

from datetime import timedelta

from temporalio.common import RetryPolicy

ACTIVITY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
# One attempt of a side effect (send, coupon, tags, begin, end).
SIDE_EFFECT_TIMEOUT = timedelta(seconds=30)
# How long a send or coupon goes on retrying before the run records a failure.
SIDE_EFFECT_DEADLINE = timedelta(hours=1)
# One attempt of a local read or write (snapshot, step records).
LOCAL_TIMEOUT = timedelta(seconds=10)
