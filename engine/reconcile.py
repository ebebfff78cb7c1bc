"""Send a delivery once even when an earlier attempt's outcome is unknown.

The ledger reserves a delivery under its idempotency key before calling the
provider, so a retried activity finds the reservation (``reserved``, with
``attempts`` > 1). That retry is *ambiguous*: the earlier attempt may have
reached the vendor and only its answer been lost (timeout, connection cut,
worker crash). Vendors that de-duplicate by key (WeChat ``client_msg_id``, the
push gateway, webhook receivers) make a blind re-send harmless; for the ones
that do not, but can be asked (Aliyun SMS, WeCom ``add_msg_template``), the
provider implements :class:`engine.channels.base.Reconcilable` and is asked
first. Which channel guarantees what is tabled in :mod:`engine.channels`.
"""

from __future__ import annotations

from datetime import datetime

from engine.channels.base import ChannelProvider, OutboundMessage, ProviderResult, Reconcilable


async def send_once(
    provider: ChannelProvider, message: OutboundMessage, *, earlier_attempt_at: datetime | None
) -> ProviderResult:
    """``provider.send(message)``, unless an earlier attempt already landed.

    ``earlier_attempt_at`` is when the delivery's first attempt began, or None
    when this is the first. With an earlier attempt and a provider that can
    reconcile: the vendor's record of it is the answer (no second message);
    a retryable failure when the vendor cannot tell yet (the caller retries
    the step, which keeps the delivery unsent rather than doubled); only "no
    record" leads to sending. Other providers simply send again, relying on
    the vendor's own de-duplication where there is one.
    """
    if earlier_attempt_at is not None and isinstance(provider, Reconcilable):
        found = await provider.reconcile(message, earlier_attempt_at)
        if found is not None:
            return found
    return await provider.send(message)
