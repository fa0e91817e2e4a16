"""Accounts and roles for a team's served review page (``qcode user add``).

* A lead manages the project (codebook versions, exports) and sees everyone's work; a reviewer
  decides (blind per account for double coding); a reader sees quotes only.
* Passwords are hashed with scrypt from the standard library (salted, memory-hard); a login
  gives a random session token whose SHA-256 alone is stored, so a copy of the database lets
  nobody in.
* After ``MAX_FAILURES`` wrong passwords in a row an account is locked for ``LOCK_MINUTES``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pipeline.errors import QcodeError
from pipeline.store import Store, now

ROLES = ("lead", "reviewer", "reader")
MIN_PASSWORD = 12
MAX_FAILURES = 5
LOCK_MINUTES = 15
SESSION_HOURS = 12
SCRYPT = {"n": 2**15, "r": 8, "p": 1}
_DUMMY_HASH: str | None = None


class AccountError(QcodeError):
    """An account cannot be made or used as asked."""

    code = "E710"
    fix = (
        "Check the name and role (lead, reviewer or reader) and that the project database is the "
        "one the page serves; qcode user add --help lists the options."
    )


class LoginRefused(AccountError):
    """Wrong name or password, or a locked account (the message never says which name exists)."""

    code = "E711"
    fix = (
        "Check the name and password; after 5 wrong tries the account is locked for 15 minutes, "
        "then try again."
    )


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    blind: bool = False


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, maxmem=2**26, dklen=32, **SCRYPT)
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if kind != "scrypt":
        return False
    found = hashlib.scrypt(
        password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
        maxmem=2**26, dklen=32,
    )  # fmt: skip
    return hmac.compare_digest(found.hex(), digest)


def valid_name(name: str) -> str:
    tidy = " ".join(name.split())
    if not tidy or len(tidy) > 80 or not tidy.isprintable():
        raise AccountError("an account name is 1 to 80 printable characters")
    return tidy


def add_user(store: Store, name: str, role: str, password: str, blind: bool = False) -> Account:
    """A new account; refuses an existing name, an unknown role or a short password."""
    name = valid_name(name)
    if role not in ROLES:
        raise AccountError(f"'{role}' is not a role (use one of {', '.join(ROLES)})")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must be at least {MIN_PASSWORD} characters")
    with store.write() as db:
        if db.execute("SELECT 1 FROM accounts WHERE name = ?", (name,)).fetchone():
            raise AccountError(f"there is already an account called '{name}'")
        db.execute(
            "INSERT INTO accounts (name, role, password_hash, blind, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (name, role, hash_password(password), int(blind), now()),
        )
    return Account(name, role, blind)


def has_accounts(store: Store) -> bool:
    return store.db.execute("SELECT 1 FROM accounts LIMIT 1").fetchone() is not None


def login(store: Store, name: str, password: str) -> tuple[str, Account]:
    """(session token for the cookie, the account) or LoginRefused."""
    global _DUMMY_HASH
    row = store.db.execute(
        "SELECT name, role, blind, password_hash, locked_until FROM accounts WHERE name = ?",
        (" ".join(name.split()),),
    ).fetchone()
    if row is None:
        # Spend the same time as a real check: response times must not reveal names.
        _DUMMY_HASH = _DUMMY_HASH or hash_password(secrets.token_hex(8))
        verify_password(password, _DUMMY_HASH)
        raise LoginRefused("wrong name or password")
    account = Account(row[0], row[1], bool(row[2]))
    stamp = now()
    if row[4] and row[4] > stamp:
        raise LoginRefused(
            f"this account is locked after {MAX_FAILURES} wrong passwords; try again after "
            f"{row[4][11:16]} UTC or ask your lead"
        )
    if not verify_password(password, row[3]):
        with store.write() as db:
            failures = db.execute(
                "SELECT failed_logins FROM accounts WHERE name = ?", (account.name,)
            ).fetchone()[0]
            failures += 1
            locked = ""
            if failures >= MAX_FAILURES:
                locked = _later(minutes=LOCK_MINUTES)
                failures = 0
            db.execute(
                "UPDATE accounts SET failed_logins = ?, locked_until = ? WHERE name = ?",
                (failures, locked, account.name),
            )
        raise LoginRefused("wrong name or password")
    token = secrets.token_urlsafe(32)
    with store.write() as db:
        db.execute(
            "UPDATE accounts SET failed_logins = 0, locked_until = '' WHERE name = ?",
            (account.name,),
        )
        db.execute("DELETE FROM login_sessions WHERE expires_at < ?", (stamp,))
        db.execute(
            "INSERT INTO login_sessions VALUES (?, ?, ?, ?)",
            (_sha(token), account.name, stamp, _later(hours=SESSION_HOURS)),
        )
    return token, account


def account_for(store: Store, token: str) -> Account | None:
    """The account a session cookie belongs to, while the session lasts."""
    if not token:
        return None
    row = store.db.execute(
        "SELECT a.name, a.role, a.blind FROM login_sessions s JOIN accounts a"
        " ON a.name = s.account WHERE s.session_sha256 = ? AND s.expires_at > ?",
        (_sha(token), now()),
    ).fetchone()
    return Account(row[0], row[1], bool(row[2])) if row else None


def logout(store: Store, token: str) -> None:
    with store.write() as db:
        db.execute("DELETE FROM login_sessions WHERE session_sha256 = ?", (_sha(token),))


def record_event(store: Store, account: str, action: str, detail: str = "") -> None:
    """An audit line (an export, say) under the logged-in account."""
    with store.write() as db:
        db.execute(
            "INSERT INTO audit_events (account, at, action, detail) VALUES (?, ?, ?, ?)",
            (account, now(), action, detail),
        )


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _later(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat(timespec="milliseconds")
