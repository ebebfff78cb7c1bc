"""Custom search attributes that make runs findable and countable.

Registered when the dev server starts (``engine.temporal``) and upserted by the
interpreter: per-node "waiting now" counts are visibility queries on these.
"""

from temporalio.common import SearchAttributeKey

JOURNEY_ID = SearchAttributeKey.for_keyword("JourneyId")
JOURNEY_VERSION = SearchAttributeKey.for_int("JourneyVersion")
JOURNEY_STEP = SearchAttributeKey.for_keyword("JourneyStep")
JOURNEY_VARIANT = SearchAttributeKey.for_keyword("JourneyVariant")
JOURNEY_USER = SearchAttributeKey.for_keyword("JourneyUser")

ALL = [JOURNEY_ID, JOURNEY_VERSION, JOURNEY_STEP, JOURNEY_VARIANT, JOURNEY_USER]
