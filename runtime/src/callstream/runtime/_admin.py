"""One service's admin bearer token, and the one way every service checks it.

Each service has its own token (``CALLSTREAM_<SERVICE>_ADMIN_TOKEN``), so one service's
environment never carries another's admin power, and one service's token is a 401 at another.
The presented and the expected token are compared as SHA-256 digests with
:func:`hmac.compare_digest`: both sides are always 32 bytes, so neither the token's content nor its
length shows in the time an answer takes (a compare of the raw strings returns at once on a length
mismatch).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from pydantic import AfterValidator, SecretStr

from ._http import ApiError

# 32 characters of a URL-safe alphabet are ~190 bits: beyond guessing, whatever a deployer types.
ADMIN_TOKEN_MIN_LENGTH = 32

_BEARER = "bearer "


def _long_enough(value: SecretStr) -> SecretStr:
    if len(value.get_secret_value()) < ADMIN_TOKEN_MIN_LENGTH:
        raise ValueError(f"must be at least {ADMIN_TOKEN_MIN_LENGTH} characters long")
    return value


# A settings field's type for an admin token: a secret of at least ADMIN_TOKEN_MIN_LENGTH characters,
# refused at start with a line naming the variable (load_settings) otherwise.
AdminTokenSecret = Annotated[SecretStr, AfterValidator(_long_enough)]


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value (any case of the scheme), else None."""
    if authorization[: len(_BEARER)].lower() != _BEARER:
        return None
    token = authorization[len(_BEARER) :].strip()
    return token or None


class AdminToken:
    """The admin token of one service (``variable`` names its setting); ``None`` = the admin API is
    closed. Usable as a litestar guard: ``guards=[admin]``."""

    __slots__ = ("_expected", "variable")

    def __init__(self, token: SecretStr | str | None, variable: str) -> None:
        value = token.get_secret_value() if isinstance(token, SecretStr) else token
        self._expected = _digest(value) if value else None
        self.variable = variable

    @property
    def configured(self) -> bool:
        return self._expected is not None

    def accepts(self, token: str) -> bool:
        """Whether ``token`` is this service's admin token (compared as fixed-length digests)."""
        if self._expected is None:
            return False
        return hmac.compare_digest(_digest(token), self._expected)

    def accepts_header(self, authorization: str) -> bool:
        token = bearer_token(authorization)
        return token is not None and self.accepts(token)

    def __call__(self, connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
        if self._expected is None:
            raise ApiError(401, "admin_disabled", f"the admin API is closed: {self.variable} is not set")
        if not self.accepts_header(connection.headers.get("authorization", "")):
            raise ApiError(
                401,
                "unauthorized",
                "a valid admin bearer token is required",
                headers={"WWW-Authenticate": 'Bearer realm="callstream"'},
            )

    def __repr__(self) -> str:  # never the token, nor its digest
        return f"AdminToken({self.variable}, configured={self.configured})"
