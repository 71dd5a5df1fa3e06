"""The swarm's root CA as `TLSInfo` shows it (swarm inspect, node inspect).

A one-node swarm never issues node certificates (nothing joins), so only the root certificate matters: clients
show it and derive the join tokens' CA digest from it. It is made like swarmkit's (ECDSA P-256, CN=swarm-ca, 20
years) by the openssl command; its key is thrown away, as nothing is ever signed with it.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import shutil
from typing import Any

log = logging.getLogger("skiffd")

# The DER of the subject `CN=swarm-ca` (a PrintableString, as Go's x509 writes it): swarmkit's issuer is always it.
_SUBJECT_DER_B64 = "MBMxETAPBgNVBAMTCHN3YXJtLWNh"
_DAYS = 20 * 365


async def _openssl(args: list[str], data: bytes = b"") -> bytes:
    proc = await asyncio.create_subprocess_exec("openssl", *args, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(data)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {err.decode(errors='replace').strip()}")
    return out


async def new_tls_info() -> dict[str, Any]:
    """A fresh root CA's TLSInfo; empty fields (and a log line) where the openssl command is missing or fails."""
    if shutil.which("openssl") is None:
        log.warning("swarm: no openssl command, the swarm's TLSInfo stays empty")
        return {"TrustRoot": "", "CertIssuerSubject": "", "CertIssuerPublicKey": ""}
    try:
        out = await _openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                              "-keyout", "-", "-out", "-", "-subj", "/CN=swarm-ca", "-days", str(_DAYS), "-sha256",
                              "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                              "-addext", "basicConstraints=critical,CA:true"])
        text = out.decode()
        start = text.index("-----BEGIN CERTIFICATE-----")
        end = text.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
        key_pem = text[:start] if "PRIVATE KEY" in text[:start] else text[end:]
        spki = await _openssl(["pkey", "-pubout", "-outform", "DER"], key_pem.encode())
    except (RuntimeError, ValueError, OSError) as e:
        log.warning("swarm: could not make the root CA (%s), the swarm's TLSInfo stays empty", e)
        return {"TrustRoot": "", "CertIssuerSubject": "", "CertIssuerPublicKey": ""}
    return {"TrustRoot": text[start:end] + "\n", "CertIssuerSubject": _SUBJECT_DER_B64,
            "CertIssuerPublicKey": base64.b64encode(spki).decode()}
