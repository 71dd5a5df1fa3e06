"""The identifiers and secrets a swarm hands out, in swarmkit's formats (clients show and sometimes parse them)."""

from __future__ import annotations

import base64
import hashlib
import secrets

_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int, width: int) -> str:
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = _B36[r] + out
    return out.rjust(width, "0")


def new_id() -> str:
    """swarmkit's identity.NewID: 128 random bits in base 36, 25 characters."""
    return _base36(secrets.randbits(128), 25)


def join_token(ca_cert_pem: str) -> str:
    """`SWMTKN-1-<CA digest, base 36>-<random secret>`: the digest lets a joining node check the CA it talks to."""
    digest = int.from_bytes(hashlib.sha256(ca_cert_pem.encode()).digest(), "big")
    return f"SWMTKN-1-{_base36(digest, 50)}-{_base36(secrets.randbits(128), 25)}"


def unlock_key() -> str:
    """`SWMKEY-1-<32 random bytes, unpadded base64>` as `docker swarm unlock-key` shows it."""
    return "SWMKEY-1-" + base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
