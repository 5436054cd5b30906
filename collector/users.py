"""Dashboard users: email, an Argon2id password hash, admin or a list of sites.

Keys (not site data, so without a site hash tag; single-key commands only):

    es:users                 SET   emails of all users
    es:user:<email>          HASH  email, pw (Argon2id hash, salted by argon2-cffi),
                                   admin (1/0), sites (JSON list of site ids),
                                   created_at, sv (session version: bumped when the
                                   password changes, which signs every session out)
    es:signin:<kind>:<key>:<window>  STRING  sign-in attempts in a window (rate limit)

Passwords are hashed with argon2-cffi's defaults (Argon2id, RFC 9106 low-memory
profile); a hash made with older parameters is upgraded at the next sign-in.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from collector import keys

USERS = f"{keys.PREFIX}:users"
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
SIGNIN_WINDOW = 900
SIGNIN_PER_EMAIL = 10
SIGNIN_PER_CLIENT = 30

_hasher = PasswordHasher()
# Verified against when the email is unknown, so both cases cost the same time.
_DUMMY = _hasher.hash("not a real password, used for timing")


class UserError(ValueError):
    pass


@dataclass(frozen=True)
class User:
    email: str
    admin: bool
    sites: tuple[str, ...]
    session_version: int

    def can_see(self, site_id: str) -> bool:
        return self.admin or site_id in self.sites


def _key(email: str) -> str:
    return f"{keys.PREFIX}:user:{email}"


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if not 3 <= len(email) <= 254 or email.count("@") != 1 or " " in email:
        raise UserError("not an email address")
    local, domain = email.split("@")
    if not local or "." not in domain:
        raise UserError("not an email address")
    return email


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"a password has at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"a password has at most {MAX_PASSWORD} characters")


def create(client: Any, email: str, password: str, admin: bool = False, sites: list[str] | None = None) -> User:
    email = normalise_email(email)
    check_password(password)
    data = {"email": email, "pw": _hasher.hash(password), "admin": int(admin),
            "sites": json.dumps(sorted(set(sites or []))), "created_at": int(time.time()), "sv": 1}
    if not client.hsetnx(_key(email), "email", email):
        raise UserError(f"a user {email} exists already")
    client.hset(_key(email), mapping=data)
    client.sadd(USERS, email)
    return User(email, admin, tuple(sorted(set(sites or []))), 1)


def _from_hash(data: dict[bytes, bytes]) -> User | None:
    if not data or b"pw" not in data:
        return None
    return User(
        email=data[b"email"].decode(),
        admin=data.get(b"admin") == b"1",
        sites=tuple(json.loads(data.get(b"sites", b"[]"))),
        session_version=int(data.get(b"sv", b"1")),
    )


def get(client: Any, email: str) -> User | None:
    try:
        email = normalise_email(email)
    except UserError:
        return None
    return _from_hash(client.hgetall(_key(email)))


def list_all(client: Any) -> list[User]:
    found = [get(client, e.decode()) for e in sorted(client.smembers(USERS))]
    return [u for u in found if u]


def authenticate(client: Any, email: str, password: str) -> User | None:
    """The user when the password is right; None otherwise (same cost either way)."""
    try:
        email = normalise_email(email)
    except UserError:
        email = ""
    data = client.hgetall(_key(email)) if email else {}
    stored = data.get(b"pw", b"").decode() or _DUMMY
    try:
        _hasher.verify(stored, password[:MAX_PASSWORD])
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    user = _from_hash(data)
    if user is None:
        return None
    if _hasher.check_needs_rehash(stored):
        client.hset(_key(email), "pw", _hasher.hash(password))
    return user


def set_password(client: Any, email: str, password: str) -> None:
    """New password; every existing session of the user is signed out."""
    check_password(password)
    email = normalise_email(email)
    if not client.exists(_key(email)):
        raise UserError(f"no user {email}")
    client.hset(_key(email), "pw", _hasher.hash(password))
    client.hincrby(_key(email), "sv", 1)


def grant(client: Any, email: str, sites: list[str], admin: bool | None = None) -> User:
    user = get(client, email)
    if user is None:
        raise UserError(f"no user {email}")
    mapping: dict[str, Any] = {"sites": json.dumps(sorted(set(user.sites) | set(sites)))}
    if admin is not None:
        mapping["admin"] = int(admin)
    client.hset(_key(user.email), mapping=mapping)
    updated = get(client, user.email)
    assert updated is not None
    return updated


def signin_allowed(client: Any, email: str, client_hash: str, now: int) -> tuple[bool, int]:
    """Count one sign-in attempt; (allowed, seconds until the window ends)."""
    window = now // SIGNIN_WINDOW
    retry_after = SIGNIN_WINDOW - now % SIGNIN_WINDOW
    email_key = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    names = [f"{keys.PREFIX}:signin:{kind}:{key}:{window}" for kind, key in (("e", email_key), ("c", client_hash))]
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.incr(name)
        pipe.expire(name, SIGNIN_WINDOW)
    answers = pipe.execute()
    per_email, per_client = int(answers[0]), int(answers[2])
    return per_email <= SIGNIN_PER_EMAIL and per_client <= SIGNIN_PER_CLIENT, retry_after
