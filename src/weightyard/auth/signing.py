"""The hub's one HMAC signer, for everything it hands out and later takes back without a database row: LFS
upload URLs (called without an Authorization header), Xet access tokens and fetch URLs, listing cursors.

One key (the hub's `url_secret`, shared by every worker through the database) and one construction, with the
purpose inside every signed message: a signature made for one purpose never verifies for another, and each
field is length-prefixed, so no two different field lists sign the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


class Signer:
    """Signs and verifies (purpose, fields…) with HMAC-SHA256; signatures are URL-safe base64.

    Example:
        >>> signer = Signer(b"k" * 32)
        >>> signature = signer.sign("lfs-part", "upload-id", 3, 1700000000)
        >>> signer.verify(signature, "lfs-part", "upload-id", 3, 1700000000)
        True
        >>> signer.verify(signature, "lfs-complete", "upload-id", 3, 1700000000)
        False
    """

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("a signing secret has at least 32 bytes")
        self._secret = secret

    def sign(self, purpose: str, *fields: str | int | None) -> str:
        digest = hmac.new(self._secret, _message(purpose, fields), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def verify(self, signature: str, purpose: str, *fields: str | int | None) -> bool:
        """Whether `signature` is this hub's for exactly these fields (in constant time)."""
        return hmac.compare_digest(self.sign(purpose, *fields).encode(), signature.encode("utf-8", "replace"))


def _message(purpose: str, fields: tuple[str | int | None, ...]) -> bytes:
    parts = [purpose.encode()] + [b"" if field is None else str(field).encode() for field in fields]
    return b"".join(len(part).to_bytes(4, "big") + part for part in parts)
