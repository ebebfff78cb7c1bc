"""The WXBizMsgCrypt scheme WeCom (企业微信) and WeChat Official Accounts
(公众号 "安全模式") use for their callbacks.

Why a module of its own: both vendors sign and encrypt callbacks the same
way, the channel codes' tests encrypt payloads with it, and the scheme is
easy to get subtly wrong (the padding block is 32 bytes, not AES's 16; the
IV is the key's first half), so it is pinned here once with the vendor's
published test vectors (``tests/channels/test_wecom_crypto.py``).

The scheme (WeCom developer docs, "加解密方案说明"):

- ``EncodingAESKey`` is 43 characters of base64 without its ``=``:
  ``key = base64decode(EncodingAESKey + "=")`` (32 bytes, AES-256), and the
  CBC IV is ``key[:16]``.
- Plaintext = 16 random bytes + the message's length (4 bytes, big endian)
  + the message (UTF-8) + the receiver id (the corp id for WeCom's own
  apps, the app id for an Official Account), padded PKCS#7 to a multiple of
  32 bytes; the ciphertext travels base64-encoded.
- ``msg_signature`` = SHA-1 (hex) of the sorted, concatenated ``token``,
  ``timestamp``, ``nonce`` and the base64 ciphertext. An Official Account
  in plaintext mode signs only ``token``, ``timestamp``, ``nonce``
  (``signature``): :func:`sha1_signature` covers both.

Failures raise :class:`CallbackCryptoError` with the vendor's error name so
a caller can answer a useful 4xx; nothing here logs the key or the
plaintext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32  # WXBizMsgCrypt pads to 32 bytes (PKCS#7 with k = 32), not AES's 16
RANDOM_BYTES = 16
_LENGTH = struct.Struct(">I")


class CallbackCryptoError(ValueError):
    """A callback that cannot be verified or decrypted; ``code`` names why
    (``bad-signature``, ``bad-key``, ``bad-ciphertext``, ``bad-receiver``)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


def sha1_signature(*parts: str) -> str:
    """SHA-1 hex of the parts sorted (as byte strings) and joined: the
    vendors' ``msg_signature`` (token, timestamp, nonce, ciphertext) and the
    Official Account's plaintext ``signature`` (token, timestamp, nonce)."""
    joined = "".join(sorted(parts))
    return hashlib.sha1(joined.encode("utf-8")).hexdigest()  # noqa: S324 - the vendor's scheme


def signature_matches(expected: str, given: str | None) -> bool:
    """Constant-time comparison (a signature must not be guessable byte by
    byte from response times); case-insensitive like the vendors' samples."""
    if not given:
        return False
    return hmac.compare_digest(expected.lower().encode("ascii"), given.strip().lower().encode("ascii", "replace"))


def aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key from the 43-character ``EncodingAESKey``."""
    text = encoding_aes_key.strip()
    if len(text) != 43:
        raise CallbackCryptoError("bad-key", f"EncodingAESKey must be 43 characters (got {len(text)})")
    try:
        key = base64.b64decode(text + "=", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CallbackCryptoError("bad-key", "EncodingAESKey is not base64") from exc
    if len(key) != 32:  # pragma: no cover - 43 base64 characters + "=" are always 32 bytes
        raise CallbackCryptoError("bad-key", "EncodingAESKey does not decode to 32 bytes")
    return key


def pad(data: bytes) -> bytes:
    """PKCS#7 to a multiple of 32 bytes (a full block when already aligned)."""
    n = BLOCK - len(data) % BLOCK
    return data + bytes([n]) * n


def unpad(data: bytes) -> bytes:
    if not data:
        raise CallbackCryptoError("bad-ciphertext", "empty plaintext")
    n = data[-1]
    if not 1 <= n <= BLOCK or n > len(data) or data[-n:] != bytes([n]) * n:
        raise CallbackCryptoError("bad-ciphertext", "bad padding (wrong EncodingAESKey?)")
    return data[:-n]


@dataclass(frozen=True)
class Decrypted:
    message: bytes  # the XML (or the echostr's plaintext), UTF-8
    receiver_id: str  # corp id / app id the sender encrypted for


class MsgCrypt:
    """One app's callback crypto: its token, its key and its receiver id
    (``corp_id`` for WeCom, the Official Account's ``app_id``)."""

    def __init__(self, token: str, encoding_aes_key: str, receiver_id: str) -> None:
        if not token:
            raise CallbackCryptoError("bad-key", "the callback token is empty")
        self.token = token
        self.key = aes_key(encoding_aes_key)
        self.receiver_id = receiver_id

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16]))

    def signature(self, timestamp: str, nonce: str, encrypted: str) -> str:
        return sha1_signature(self.token, timestamp, nonce, encrypted)

    def verify(self, msg_signature: str | None, timestamp: str, nonce: str, encrypted: str) -> None:
        """Raise unless ``msg_signature`` signs this ciphertext."""
        if not signature_matches(self.signature(timestamp, nonce, encrypted), msg_signature):
            raise CallbackCryptoError("bad-signature", "msg_signature does not match (wrong token, or forged)")

    def encrypt(self, message: bytes, *, random_prefix: bytes | None = None) -> str:
        """Base64 ciphertext of ``message`` for this receiver (what the vendor
        sends; a passive reply, and the tests' payloads). ``random_prefix``
        is for known-answer tests only."""
        prefix = os.urandom(RANDOM_BYTES) if random_prefix is None else random_prefix
        if len(prefix) != RANDOM_BYTES:
            raise ValueError("the random prefix is 16 bytes")
        plain = prefix + _LENGTH.pack(len(message)) + message + self.receiver_id.encode("utf-8")
        encryptor = self._cipher().encryptor()
        return base64.b64encode(encryptor.update(pad(plain)) + encryptor.finalize()).decode("ascii")

    def decrypt(self, encrypted: str, *, check_receiver: bool = True) -> Decrypted:
        """The message inside ``encrypted``; the receiver id must be ours
        (else another corp's or app's ciphertext under a shared key)."""
        try:
            raw = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CallbackCryptoError("bad-ciphertext", "the ciphertext is not base64") from exc
        if not raw or len(raw) % 16:
            raise CallbackCryptoError("bad-ciphertext", "the ciphertext is not whole AES blocks")
        decryptor = self._cipher().decryptor()
        plain = unpad(decryptor.update(raw) + decryptor.finalize())
        if len(plain) < RANDOM_BYTES + _LENGTH.size:
            raise CallbackCryptoError("bad-ciphertext", "the plaintext is too short")
        (length,) = _LENGTH.unpack_from(plain, RANDOM_BYTES)
        start = RANDOM_BYTES + _LENGTH.size
        if start + length > len(plain):
            raise CallbackCryptoError("bad-ciphertext", "the message length is past the plaintext (wrong key?)")
        message = plain[start : start + length]
        try:
            receiver = plain[start + length :].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CallbackCryptoError("bad-ciphertext", "the receiver id is not text (wrong key?)") from exc
        if check_receiver and receiver != self.receiver_id:
            raise CallbackCryptoError(
                "bad-receiver", f"encrypted for {receiver!r}, not for this receiver ({self.receiver_id!r})"
            )
        return Decrypted(message, receiver)

    def verify_and_decrypt(self, msg_signature: str | None, timestamp: str, nonce: str, encrypted: str) -> Decrypted:
        """Signature first: nothing is decrypted for a sender that cannot sign."""
        self.verify(msg_signature, timestamp, nonce, encrypted)
        return self.decrypt(encrypted)
