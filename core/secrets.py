"""Secrets at rest: plugin-config secret values sealed with AES-256-GCM before they are
recorded, under a key the ledger never holds.

A sealed value is a self-describing string, `enc:v1:<key id>:<base64url>`: the key id
names the key that sealed it (the first 12 hex digits of a SHA-256 over the key, so
the key itself is never revealed), and the payload is a 96-bit random nonce followed by
the GCM ciphertext and tag of the value's JSON. The associated data binds the value to
its place (`<plugin>.<field>`), so a sealed value copied into another field or plugin
fails to open. Only the values are sealed, never whole events: the projector, the
audit trail and the hash chain read everything else without a key.

The keys come from the environment (`GOALLEDGER_SECRET_KEY`, and the keys being
retired in `GOALLEDGER_SECRET_KEYS_PREVIOUS`); see docs/secrets.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from goalledger.core.errors import DomainError

KEY_VARIABLE = "GOALLEDGER_SECRET_KEY"
PREVIOUS_VARIABLE = "GOALLEDGER_SECRET_KEYS_PREVIOUS"
PREFIX = "enc:v1:"
KEY_BYTES = 32
NONCE_BYTES = 12
HOW_TO = "see docs/secrets.md; 'goalledger secrets new-key' makes a key"


class SecretKeyProblem(DomainError):
    """A secret cannot be sealed or opened with the keys configured; names what to set."""


def new_key() -> str:
    """A fresh random key, as `GOALLEDGER_SECRET_KEY` takes it (32 bytes, base64url)."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode()


def key_id(key: bytes) -> str:
    """The public name of a key: written beside every value it seals."""
    return hashlib.sha256(b"goalledger secret key id\0" + key).hexdigest()[:12]


def is_sealed(value: object) -> bool:
    """Whether a stored config value is a sealed secret."""
    return isinstance(value, str) and value.startswith(PREFIX)


def sealed_key_id(value: str) -> str:
    """The id of the key that sealed `value` (which `is_sealed`)."""
    return value[len(PREFIX) :].split(":", 1)[0]


class Keyring:
    """The current key (seals and opens) and previous keys (open only, during rotation)."""

    def __init__(self, current: bytes | None = None, previous: Iterable[bytes] = ()) -> None:
        self._current = current
        self._keys: dict[str, AESGCM] = {}
        for key in (*([current] if current else []), *previous):
            self._keys.setdefault(key_id(key), AESGCM(key))
        self.current_id = key_id(current) if current else None

    @classmethod
    def parse(cls, current: str, previous: str = "") -> Keyring:
        """Keys as the environment gives them: base64url, previous ones comma-separated."""
        previous_keys = [
            _decode_key(text.strip(), PREVIOUS_VARIABLE)
            for text in previous.split(",")
            if text.strip()
        ]
        current = current.strip()
        return cls(_decode_key(current, KEY_VARIABLE) if current else None, previous_keys)

    @property
    def ids(self) -> frozenset[str]:
        """Ids of every key that can open a value."""
        return frozenset(self._keys)

    def __repr__(self) -> str:  # never the keys themselves
        return f"Keyring(current={self.current_id!r}, ids={sorted(self.ids)!r})"

    def seal(self, value: Any, place: str, *, field: str) -> str:
        """`value` sealed under the current key; `field` names the input in errors."""
        if self._current is None or self.current_id is None:
            raise SecretKeyProblem(
                field,
                f"is a secret, and secrets are stored encrypted: set {KEY_VARIABLE} "
                f"on the server ({HOW_TO}); nothing was recorded",
            )
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self.current_id].encrypt(
            nonce, msgspec.json.encode(value), _associated(place)
        )
        payload = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{PREFIX}{self.current_id}:{payload}"

    def open(self, value: Any, place: str, *, field: str) -> Any:
        """The value a sealed string holds; anything not sealed is returned as it is."""
        if not is_sealed(value):
            return value
        kid, _, payload = value[len(PREFIX) :].partition(":")
        cipher = self._keys.get(kid)
        if cipher is None:
            raise SecretKeyProblem(field, self.unknown_key_message(kid))
        try:
            raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
            plain = cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _associated(place))
        except (InvalidTag, ValueError, binascii.Error):
            raise SecretKeyProblem(
                field,
                f"was sealed under key {kid} but does not open with it: the stored value "
                f"is damaged or {KEY_VARIABLE} holds another key with the same id",
            ) from None
        return msgspec.json.decode(plain)

    def unknown_key_message(self, kid: str) -> str:
        """Why a value sealed under key `kid` cannot be opened here, and what to set."""
        if not self._keys:
            return f"is encrypted under key {kid}, and no key is set: set {KEY_VARIABLE} ({HOW_TO})"
        known = ", ".join(sorted(self.ids))
        return (
            f"is encrypted under key {kid}, which is neither {KEY_VARIABLE} nor any of "
            f"{PREVIOUS_VARIABLE} (keys set: {known}); set the key it was sealed with"
        )


def _associated(place: str) -> bytes:
    return f"goalledger secret v1\0{place}".encode()


def _decode_key(text: str, variable: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise SecretKeyProblem(
            variable, f"must be {KEY_BYTES} random bytes in base64url ({HOW_TO})"
        )
    return key
