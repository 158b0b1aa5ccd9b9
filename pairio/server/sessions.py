"""Session cookies of the status page: one signed request exchanged for a short-lived cookie.

The page never sends a password: its sign-in form signs one request in the browser (WebCrypto
HMAC-SHA256, as :mod:`pairio.signing` signs), and the server answers it with a cookie that names
the channel and an expiry, authenticated by an HMAC keyed by the channel's password::

    v1.<channel, base64url>.<expires, Unix seconds>.<HMAC-SHA256 hex of "pairio-session\\n" channel "\\n" expires>

So any replica or worker that knows the passwords checks it, a changed password ends its
sessions, and the cookie holds nothing from which the password could be read back. The cookie is
``HttpOnly`` (no script reads it) and ``SameSite=Strict`` (no other site's page sends it), and it
is taken only on the read-only status views: everything that writes needs a signed request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

COOKIE = "pairio_session"
SESSION_S = 3600  # how long a sign-in lasts


def _mac(password: str, channel: str, expires: int) -> str:
    message = f"pairio-session\n{channel}\n{expires}".encode()
    return hmac.new(password.encode("utf-8"), message, hashlib.sha256).hexdigest()


def make_token(channel: str, password: str, now: float | None = None, seconds: int = SESSION_S) -> str:
    """A session token for ``channel``, valid ``seconds`` from ``now``."""
    expires = int(time.time() if now is None else now) + seconds
    name = base64.urlsafe_b64encode(channel.encode("utf-8")).decode("ascii").rstrip("=")
    return f"v1.{name}.{expires}.{_mac(password, channel, expires)}"


def _parts(token: str | None, passwords: Mapping[str, str], now: float | None) -> tuple[str, str, str] | None:
    """(channel, the MAC it should have, the MAC it has) of a well-formed, unexpired ``token`` of a
    known channel; None for anything else."""
    if not token or len(token) > 512:
        return None
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != "v1" or not parts[2].isdigit():
        return None
    try:
        channel = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    expires = int(parts[2])
    password = passwords.get(channel)
    if password is None or expires < (time.time() if now is None else now):
        return None
    return channel, _mac(password, channel, expires), parts[3] if parts[3].isascii() else ""


def check_token(token: str | None, passwords: Mapping[str, str], now: float | None = None) -> str | None:
    """The channel of a valid, unexpired ``token``; None for anything else."""
    found = _parts(token, passwords, now)
    if found is None or not hmac.compare_digest(found[1], found[2]):
        return None
    return found[0]


def is_forged(token: str | None, passwords: Mapping[str, str], now: float | None = None) -> bool:
    """Whether ``token`` names a channel and an unexpired time but not the MAC of its password: a guess
    of the password (counted as a failed sign-in), not merely an old or foreign cookie."""
    found = _parts(token, passwords, now)
    return found is not None and not hmac.compare_digest(found[1], found[2])


def cookie_header(token: str, secure: bool, seconds: int = SESSION_S) -> str:
    """The Set-Cookie header value that keeps ``token`` (``Secure`` over HTTPS)."""
    return (f"{COOKIE}={token}; Max-Age={seconds}; Path=/; HttpOnly; SameSite=Strict"
            + ("; Secure" if secure else ""))


def clear_cookie_header(secure: bool) -> str:
    """The Set-Cookie header value that ends a session."""
    return f"{COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")
