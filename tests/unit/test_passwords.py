"""Passwords: argon2id hashes, and the original's unsalted SHA-1 rows migrated on first login."""

from __future__ import annotations

import hashlib

import pytest

from gochat_py.logic.passwords import Passwords


@pytest.fixture
def passwords() -> Passwords:
    return Passwords(time_cost=1, memory_kib=1024)


def test_hash_is_argon2id_with_the_given_cost(passwords: Passwords) -> None:
    stored = passwords.hash("secret")
    assert stored.startswith("$argon2id$")
    assert "m=1024,t=1,p=1" in stored
    assert "secret" not in stored


def test_hash_is_salted(passwords: Passwords) -> None:
    assert passwords.hash("secret") != passwords.hash("secret")


def test_verify_argon2(passwords: Passwords) -> None:
    stored = passwords.hash("secret")
    assert passwords.verify(stored, "secret") == (True, False)
    assert passwords.verify(stored, "Secret") == (False, False)
    assert passwords.verify(stored, "") == (False, False)


def test_non_ascii_password(passwords: Passwords) -> None:
    stored = passwords.hash("pässwörd密码")
    assert passwords.verify(stored, "pässwörd密码") == (True, False)
    assert passwords.verify(stored, "passwort") == (False, False)


def test_legacy_sha1_row_is_accepted_and_flagged_for_rehash(passwords: Passwords) -> None:
    legacy = hashlib.sha1(b"111111").hexdigest()
    assert len(legacy) == 40
    assert passwords.verify(legacy, "111111") == (True, True)


def test_legacy_sha1_row_with_the_wrong_password(passwords: Passwords) -> None:
    legacy = hashlib.sha1(b"111111").hexdigest()
    matches, _ = passwords.verify(legacy, "222222")
    assert matches is False


def test_legacy_sha1_of_a_non_ascii_password_uses_utf8(passwords: Passwords) -> None:
    legacy = hashlib.sha1("é".encode()).hexdigest()
    assert passwords.verify(legacy, "é")[0] is True


def test_hash_made_with_other_costs_is_flagged_for_rehash(passwords: Passwords) -> None:
    stronger = Passwords(time_cost=2, memory_kib=2048)
    stored = passwords.hash("secret")
    assert stronger.verify(stored, "secret") == (True, True)
    assert stronger.verify(stronger.hash("secret"), "secret") == (True, False)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "not a hash",
        "$argon2id$garbage",
        hashlib.sha1(b"x").hexdigest()[:39],  # 39 hex characters: neither legacy nor argon2
        hashlib.sha1(b"x").hexdigest().upper(),
    ],
)
def test_unusable_rows_never_match(passwords: Passwords, stored: str) -> None:
    assert passwords.verify(stored, "x") == (False, False)
