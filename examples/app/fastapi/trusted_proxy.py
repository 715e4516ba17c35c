"""FastAPI dependency: the identity trustgate (the trusted proxy in front of this app) asserts for the caller.

trustgate verifies the caller's credential, then adds a short-lived JWT it signs itself; `trusted_identity`
checks that JWT's signature (keys from the proxy's JWKS), issuer, audience and expiry with PyJWT and returns
the caller's Identity, or answers 401. README.md, "For application developers". The assertion is a bearer
credential: never log it.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import jwt
from fastapi import HTTPException, Request

HEADER = os.environ.get("TRUSTED_PROXY_ASSERTION_HEADER") or "x-trustgate-assertion"
ISSUER = os.environ["TRUSTED_PROXY_ISSUER"]
AUDIENCE = os.environ["TRUSTED_PROXY_AUDIENCE"]
# Keys are cached; an unknown kid (a rotation) fetches the JWKS again.
JWKS = jwt.PyJWKClient(os.environ["TRUSTED_PROXY_JWKS_URL"], lifespan=300)

log = logging.getLogger("trusted_proxy")


@dataclass(frozen=True)
class Identity:
    subject: str
    claims: dict  # every verified claim: map them to your user model here


def trusted_identity(request: Request) -> Identity:
    """A plain `def`: FastAPI runs it in its thread pool, so fetching the JWKS never blocks the event loop."""
    values = request.headers.getlist(HEADER)
    if len(values) != 1:
        raise _refuse("duplicate" if values else "missing")
    try:
        key = JWKS.get_signing_key_from_jwt(values[0])
        claims = jwt.decode(
            values[0],
            key.key,
            algorithms=["EdDSA", "ES256"],
            issuer=ISSUER,
            audience=AUDIENCE,
            options={"require": ["iss", "aud", "sub", "iat", "exp"]},
        )
    except jwt.PyJWTError as e:
        raise _refuse(type(e).__name__) from None  # the error's class (ExpiredSignatureError, …), never the token
    return Identity(subject=claims["sub"], claims=claims)


def _refuse(why: str) -> HTTPException:
    log.warning("identity assertion refused: %s", why)
    return HTTPException(status_code=401, detail="unauthorized")
