"""WXBizMsgCrypt against the vendor's published vectors (the WeCom docs'
"加解密方案说明" sample: token QDG6eK, corp wx5823bf96d3bd56c7), and the
edges a wrong implementation gets wrong: the 32-byte padding block, the IV
as the key's first half, the receiver id check."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from engine.channels.wecom_crypto import CallbackCryptoError, MsgCrypt, pad, sha1_signature, unpad

TOKEN = "QDG6eK"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
CORP_ID = "wx5823bf96d3bd56c7"

# POST /cgi-bin/wxpush?msg_signature=477715d1...&timestamp=1409659813&nonce=1372623149
POST_SIGNATURE = "477715d11cdb4164915debcba66cb864d751f3e6"
POST_TIMESTAMP, POST_NONCE = "1409659813", "1372623149"
POST_ENCRYPT = (
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs"
    "3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5g"
    "sijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQ"
    "Uax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uy"
    "PIGHBZZIs2pDBS8R07+qN+E7Q=="
)
POST_MESSAGE = (
    b"<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n"
    b"<FromUserName><![CDATA[mycreate]]></FromUserName>\n"
    b"<CreateTime>1409659813</CreateTime>\n"
    b"<MsgType><![CDATA[text]]></MsgType>\n"
    b"<Content><![CDATA[hello]]></Content>\n"
    b"<MsgId>4561255354251345929</MsgId>\n"
    b"<AgentID>218</AgentID>\n"
    b"</xml>"
)
# GET verification: msg_signature=5c45ff5e...&timestamp=1409659589&nonce=263014780&echostr=P9nA...
VERIFY_SIGNATURE = "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3"
VERIFY_TIMESTAMP, VERIFY_NONCE = "1409659589", "263014780"
VERIFY_ECHOSTR = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="


@pytest.fixture
def crypt() -> MsgCrypt:
    return MsgCrypt(TOKEN, AES_KEY, CORP_ID)


def test_the_docs_post_vector_verifies_and_decrypts(crypt: MsgCrypt) -> None:
    assert crypt.signature(POST_TIMESTAMP, POST_NONCE, POST_ENCRYPT) == POST_SIGNATURE
    plain = crypt.verify_and_decrypt(POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE, POST_ENCRYPT)
    assert plain.message == POST_MESSAGE
    assert plain.receiver_id == CORP_ID


def test_the_docs_url_verification_vector(crypt: MsgCrypt) -> None:
    plain = crypt.verify_and_decrypt(VERIFY_SIGNATURE, VERIFY_TIMESTAMP, VERIFY_NONCE, VERIFY_ECHOSTR)
    assert plain.message == b"1616140317555161061"


def _independent_plaintext(encrypted: str) -> bytes:
    """The vector's padded plaintext, decrypted here without the module (key
    from the 43 characters plus '=', IV the key's first 16 bytes)."""
    key = base64.b64decode(AES_KEY + "=")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    return decryptor.update(base64.b64decode(encrypted)) + decryptor.finalize()


def test_encrypting_with_the_vectors_random_prefix_gives_the_vector(crypt: MsgCrypt) -> None:
    plain = _independent_plaintext(POST_ENCRYPT)
    assert plain[16:20] == len(POST_MESSAGE).to_bytes(4, "big")
    assert len(plain) % 32 == 0 and plain[-1] <= 32  # padded to 32-byte blocks
    assert crypt.encrypt(POST_MESSAGE, random_prefix=plain[:16]) == POST_ENCRYPT


def test_padding_is_pkcs7_over_32_byte_blocks() -> None:
    assert pad(b"a" * 31) == b"a" * 31 + b"\x01"
    assert pad(b"a" * 32) == b"a" * 32 + bytes([32]) * 32  # aligned: a whole block of padding
    assert pad(b"a" * 17)[-15:] == bytes([15]) * 15  # AES's 16 would have been 15 bytes of 0x0f too
    assert len(pad(b"a" * 17)) == 32
    assert unpad(pad(b"xyz")) == b"xyz"
    for bad in (b"abc\x00", b"a" * 31 + b"\x21", b"a" * 30 + b"\x01\x02"):
        with pytest.raises(CallbackCryptoError):
            unpad(bad)


def test_a_changed_ciphertext_token_or_receiver_is_refused(crypt: MsgCrypt) -> None:
    with pytest.raises(CallbackCryptoError) as bad_sig:
        crypt.verify_and_decrypt("0" * 40, POST_TIMESTAMP, POST_NONCE, POST_ENCRYPT)
    assert bad_sig.value.code == "bad-signature"
    other_token = MsgCrypt("another", AES_KEY, CORP_ID)
    with pytest.raises(CallbackCryptoError):
        other_token.verify(POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE, POST_ENCRYPT)
    other_corp = MsgCrypt(TOKEN, AES_KEY, "ww-other-corp")
    with pytest.raises(CallbackCryptoError) as receiver:
        other_corp.verify_and_decrypt(POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE, POST_ENCRYPT)
    assert receiver.value.code == "bad-receiver"
    other_key = MsgCrypt(TOKEN, "A" * 43, CORP_ID)
    with pytest.raises(CallbackCryptoError) as key:
        other_key.decrypt(POST_ENCRYPT)
    assert key.value.code in ("bad-ciphertext", "bad-receiver")
    for garbage in ("not base64!", "", base64.b64encode(b"short").decode()):
        with pytest.raises(CallbackCryptoError):
            crypt.decrypt(garbage)


def test_a_malformed_encoding_aes_key_is_refused() -> None:
    for key in ("short", "A" * 44, "!" * 43):
        with pytest.raises(CallbackCryptoError) as refused:
            MsgCrypt(TOKEN, key, CORP_ID)
        assert refused.value.code == "bad-key"


def test_the_plaintext_signature_sorts_its_parts() -> None:
    # the Official Account's plaintext mode: sha1 of sorted token, timestamp, nonce
    import hashlib

    expected = hashlib.sha1("".join(sorted(["tok", "1700000000", "42"])).encode()).hexdigest()
    assert sha1_signature("tok", "1700000000", "42") == expected == sha1_signature("42", "tok", "1700000000")


@given(st.binary(max_size=3000), st.text(min_size=1, max_size=40))
def test_round_trip(message: bytes, receiver: str) -> None:
    crypt = MsgCrypt(TOKEN, AES_KEY, receiver)
    encrypted = crypt.encrypt(message)
    assert len(base64.b64decode(encrypted)) % 32 == 0
    assert crypt.decrypt(encrypted).message == message
