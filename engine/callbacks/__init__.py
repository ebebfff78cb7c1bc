"""Vendor callbacks: what WeCom (企业微信) and a WeChat Official Account
(公众号) push to us, made into journey events.

The path of one callback, and why each step is where it is:

1. The API route (``api.routes.callbacks``) checks the body's size, the
   signature and decrypts (``engine.channels.wecom_crypto``), parses the
   message (``engine.callbacks.messages``), and stores it as a receipt
   (``engine.callbacks.receipts``) whose id derives from the message — the
   vendor's retries are one receipt. Only then does it answer ``success``:
   WeCom gives a callback 5 s and retries one it did not hear answered, so
   the answer waits for nothing but that one write.
2. The receipt is processed off the request path
   (``engine.callbacks.processing``): mapped to journey events
   (``engine.callbacks.wecom``, ``engine.callbacks.official_account``), each
   with an id derived from the receipt's, ingested through the engine's one
   store-first, de-duplicated path (``engine.dispatch.Dispatcher.ingest``),
   so a WeCom retry or a second processing of the same receipt is the same
   event. A receipt is marked processed only once all that is done; a crash
   before leaves it to the sweep.

What maps to what is in each vendor's module; a message that names no
customer (a corp tag definition changed, a group was renamed) or that we do
not model is kept as a receipt and ignored, with the reason.
"""
