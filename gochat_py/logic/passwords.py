"""Password storage: argon2id, with the original's unsalted SHA-1 rows still accepted.

A row imported from the original holds 40 hex characters (SHA-1 of the password).  Such a row is
verified the old way once, then replaced by an argon2id hash: a lazy migration.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_LEGACY_SHA1 = re.compile(r"^[0-9a-f]{40}$")


class Passwords:
    def __init__(self, time_cost: int, memory_kib: int) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str, password: str) -> tuple[bool, bool]:
        """Returns (matches, should_rehash)."""
        if _LEGACY_SHA1.match(stored):
            digest = hashlib.sha1(password.encode()).hexdigest()
            return hmac.compare_digest(digest, stored), True
        try:
            self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False, False
        return True, self._hasher.check_needs_rehash(stored)
