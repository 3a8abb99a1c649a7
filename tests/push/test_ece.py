"""RFC 8291 encryption: the Appendix A example byte for byte, and the round trip through `decrypt`."""

from __future__ import annotations

import pytest

from tidings.push import ece

# RFC 8291 Appendix A, "Intermediate Values for Encryption" (base64url, unpadded).
PLAINTEXT = ece.b64url_decode("V2hlbiBJIGdyb3cgdXAsIEkgd2FudCB0byBiZSBhIHdhdGVybWVsb24")
AS_PRIVATE = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
AS_PUBLIC = "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
UA_PRIVATE = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
UA_PUBLIC = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
SALT = "DGv6ra1nlYgDCS1FRnbzlw"
AUTH_SECRET = "BTBZMqHH6r4Tts7J_aSIgg"
BODY = (
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27ml"
    "mlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT"
    "pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
)


def test_rfc8291_appendix_a_byte_for_byte() -> None:
    assert PLAINTEXT == b"When I grow up, I want to be a watermelon"
    as_private = ece.private_key_from_bytes(ece.b64url_decode(AS_PRIVATE))
    assert ece.b64url_encode(ece.public_bytes(as_private.public_key())) == AS_PUBLIC
    body = ece.encrypt(
        PLAINTEXT,
        ece.b64url_decode(UA_PUBLIC),
        ece.b64url_decode(AUTH_SECRET),
        as_private=as_private,
        salt=ece.b64url_decode(SALT),
    )
    assert ece.b64url_encode(body) == BODY


def test_rfc8291_appendix_a_decrypts_with_the_user_agent_key() -> None:
    ua_private = ece.private_key_from_bytes(ece.b64url_decode(UA_PRIVATE))
    assert ece.b64url_encode(ece.public_bytes(ua_private.public_key())) == UA_PUBLIC
    assert ece.decrypt(ece.b64url_decode(BODY), ua_private, ece.b64url_decode(AUTH_SECRET)) == PLAINTEXT


def test_fresh_key_and_salt_per_message_round_trip() -> None:
    ua_private = ece.private_key_from_bytes(ece.b64url_decode(UA_PRIVATE))
    ua_public, auth = ece.b64url_decode(UA_PUBLIC), ece.b64url_decode(AUTH_SECRET)
    first, second = ece.encrypt(b"hello", ua_public, auth), ece.encrypt(b"hello", ua_public, auth)
    assert first[:16] != second[:16] and first[21:86] != second[21:86]  # salt and sender key are fresh
    assert ece.decrypt(first, ua_private, auth) == b"hello"
    with pytest.raises(ece.DecryptError):
        ece.decrypt(first, ua_private, b"\x00" * 16)


def test_plaintext_over_3993_bytes_is_refused() -> None:
    ua_public, auth = ece.b64url_decode(UA_PUBLIC), ece.b64url_decode(AUTH_SECRET)
    assert len(ece.encrypt(b"x" * 3993, ua_public, auth)) == 4096
    with pytest.raises(ValueError, match="does not fit"):
        ece.encrypt(b"x" * 3994, ua_public, auth)
