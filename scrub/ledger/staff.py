"""Staff accounts and console sessions, kept in the ledger database (``scrub users``,
``scrub serve``).

- Accounts: Argon2id password hashes (argon2-cffi's RFC 9106 profile) and the ledger key's MAC
  over id, name, role and hash, so a row edited outside scrub (a role raised, a hash swapped, a
  user inserted) does not sign in. 20 wrong passwords in a row lock an account for 15 minutes.
- Sessions: the browser holds a random 32-byte token (prefixed with its account's id and
  expiry), the table only its keyed digest, so a reader of the database cannot take a session
  over and a writer cannot move one to another account. Sessions last 8 hours; sign-out ends
  one.
- Every account change, sign-in, failed sign-in, lock and sign-out is an account event in the
  ledger's chain, with the user's name (a keyed digest for a name that is no account: a
  mistyped password in the name field stays out of the history), never a password or token.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
import secrets
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from scrub.errors import UserInputError
from scrub.ledger.audit import utc
from scrub.ledger.models import StaffSession, StaffUser
from scrub.ledger.vocabulary import STAFF_ROLES

if TYPE_CHECKING:
    from scrub.ledger.service import Ledger

#: A user name: lower-case letters, digits, '.', '_' or '-', from a letter, at most 64.
NAME = re.compile(r"[a-z][a-z0-9._-]{0,63}")
PASSWORD_MIN, PASSWORD_MAX = 12, 1024
LOCK_AFTER = 20
LOCK_FOR = dt.timedelta(minutes=15)
SESSION_FOR = dt.timedelta(hours=8)
#: Argon2 checks at once in one process (each takes 64 MiB: a flood of sign-ins from many
#: addresses waits here instead of taking gigabytes).
_ARGON2_AT_ONCE = threading.BoundedSemaphore(4)
#: Said for every failed sign-in, whatever the cause (no hint whether the name exists).
SIGN_IN_FAILED = ("wrong user name or password, or the account is locked for a while after "
                  "too many wrong passwords")


class AccountError(UserInputError):
    """A staff account cannot be created or changed as asked (exit 2)."""


class SignInError(Exception):
    """A sign-in failed; the message is :data:`SIGN_IN_FAILED`, whatever the cause."""


@dataclass(frozen=True)
class StaffMember:
    id: int
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _hasher() -> Any:
    try:
        from argon2 import PasswordHasher
    except ImportError:  # the optional extra
        raise UserInputError("staff accounts need argon2-cffi",
                             hint="install scrub with the web extra: pip install 'scrub[web]'"
                             ) from None
    return PasswordHasher()


def check_name(name: str) -> str:
    if not NAME.fullmatch(name or ""):
        raise AccountError("a user name is 1 to 64 characters: lower-case letters, digits, '.', "
                           "'_' or '-', starting with a letter")
    return name


def check_password(password: str) -> str:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise AccountError(f"a password is {PASSWORD_MIN} to {PASSWORD_MAX} characters long")
    if not password.isprintable():
        raise AccountError("a password holds a control character")
    return password


class Staff:
    """Accounts and sessions of one ledger (its key: MACs and digests)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.seal = ledger.require_seal()
        self._tokens = self.seal.derived("web-session-token")
        self._names = self.seal.derived("unknown-user-name")
        self._dummy: str | None = None

    # ---- accounts

    def add_user(self, name: str, role: str, password: str, actor: str, *,
                 replace: bool = False) -> StaffMember:
        """Create an account (``replace``: set the role and password of an existing one)."""
        check_name(name)
        check_password(password)
        if role not in STAFF_ROLES:
            raise AccountError(f"--role must be one of {', '.join(STAFF_ROLES)}")
        with _ARGON2_AT_ONCE:
            hashed = _hasher().hash(password)
        result: list[StaffMember] = []

        def change(session: Session) -> None:
            user = session.scalars(select(StaffUser).where(StaffUser.name == name)).first()
            if user is not None and not replace:
                raise AccountError(f"user {name} exists", hint="pass --replace to set a new "
                                   "password and role")
            now = dt.datetime.now(dt.UTC)
            if user is None:
                user = StaffUser(name=name, role=role, password_hash=hashed, mac="",
                                 created_at=now, failed_logins=0)
                session.add(user)
                session.flush()
            user.role, user.password_hash, user.failed_logins, user.locked_until = \
                role, hashed, 0, None
            user.mac = self.seal.staff_mac(user.id, name, role, hashed)
            session.execute(delete(StaffSession).where(StaffSession.user_id == user.id))
            result.append(StaffMember(user.id, name, role))

        action = "password_set" if self._user(name) is not None else "user_added"
        self.ledger.account_event(action, actor, {"user": name, "role": role}, change=change)
        return result[0]

    def users(self) -> list[dict[str, object]]:
        """Every account: name, role, created, lock, and whether its row checks."""
        now = dt.datetime.now(dt.UTC)
        with Session(self.ledger.engine) as session:
            return [{"name": u.name, "role": u.role, "created_at": utc(u.created_at).isoformat(),
                     "locked": u.locked_until is not None and utc(u.locked_until) > now,
                     "failed_logins": u.failed_logins, "intact": self._intact(u)}
                    for u in session.scalars(select(StaffUser).order_by(StaffUser.name))]

    def unlock(self, name: str, actor: str) -> None:
        def change(session: Session) -> None:
            found = session.execute(update(StaffUser).where(StaffUser.name == name)
                                    .values(failed_logins=0, locked_until=None))
            if not getattr(found, "rowcount", 0):
                raise AccountError(f"no user {name}", hint="list them with `scrub users ls`")

        check_name(name)
        self.ledger.account_event("account_unlocked", actor, {"user": name}, change=change)

    # ---- signing in

    def sign_in(self, name: str, password: str) -> tuple[StaffMember, str]:
        """(member, session token), or :class:`SignInError`; each outcome is recorded."""
        now = dt.datetime.now(dt.UTC)
        user = self._user(name) if NAME.fullmatch(name or "") else None
        if user is None:
            self._verify(self._dummy_hash(), password)  # the same work as for an account
            digest = hmac.new(self._names, (name or "").encode(), "sha256").hexdigest()
            self._failed("console", {"user_digest": digest, "reason": "no such user"})
            raise SignInError(SIGN_IN_FAILED)
        if user.locked_until is not None and utc(user.locked_until) > now:
            self._verify(self._dummy_hash(), password)  # a locked name costs the same work
            self._failed(user.name, {"user": user.name, "reason": "locked"})
            raise SignInError(SIGN_IN_FAILED)
        if not self._intact(user):
            self._verify(self._dummy_hash(), password)  # so does an altered row
            self._failed(user.name, {"user": user.name, "reason": "account record altered"})
            raise SignInError(SIGN_IN_FAILED)
        if not self._verify(user.password_hash, password or ""):
            self._wrong_password(user, now)
            raise SignInError(SIGN_IN_FAILED)
        expires = now + SESSION_FOR
        # the token names its account and expiry, so a session row moved to another account
        # or prolonged in the database does not check (the digest covers both)
        token = f"{user.id}.{int(expires.timestamp())}.{secrets.token_urlsafe(32)}"

        def start(session: Session) -> None:
            session.execute(update(StaffUser).where(StaffUser.id == user.id)
                            .values(failed_logins=0, locked_until=None))
            session.execute(delete(StaffSession).where(StaffSession.expires_at < now))
            session.add(StaffSession(token_digest=self._digest(token), user_id=user.id,
                                     created_at=now, expires_at=expires))

        self.ledger.account_event("sign_in", user.name, {"user": user.name}, change=start)
        return StaffMember(user.id, user.name, user.role), token

    def member(self, token: str) -> StaffMember | None:
        """The signed-in member of a session token; None when it is unknown or expired, or
        the account's row no longer checks."""
        now = dt.datetime.now(dt.UTC)
        user_id, _, rest = token.partition(".")
        expires, _, _random = rest.partition(".")
        if not (user_id.isdigit() and len(user_id) < 19 and expires.isdigit()
                and int(expires) > now.timestamp()):
            return None
        with Session(self.ledger.engine) as session:
            row = session.execute(
                select(StaffUser).join(StaffSession, StaffSession.user_id == StaffUser.id)
                .where(StaffSession.token_digest == self._digest(token),
                       StaffSession.user_id == int(user_id),
                       StaffSession.expires_at > now)).scalars().first()
            if row is None or not self._intact(row):
                return None
            return StaffMember(row.id, row.name, row.role)

    def sign_out(self, token: str, member: StaffMember) -> None:
        def end(session: Session) -> None:
            session.execute(delete(StaffSession)
                            .where(StaffSession.token_digest == self._digest(token)))

        self.ledger.account_event("sign_out", member.name, {"user": member.name}, change=end)

    # ---- internals

    def _user(self, name: str) -> StaffUser | None:
        with Session(self.ledger.engine) as session:
            user = session.scalars(select(StaffUser).where(StaffUser.name == name)).first()
            if user is not None:
                session.expunge(user)
            return user

    def _intact(self, user: StaffUser) -> bool:
        expected = self.seal.staff_mac(user.id, user.name, user.role, user.password_hash)
        return hmac.compare_digest(expected, user.mac or "")

    def _digest(self, token: str) -> str:
        return hmac.new(self._tokens, token.encode(), "sha256").hexdigest()

    def _dummy_hash(self) -> str:
        if self._dummy is None:
            self._dummy = _hasher().hash(secrets.token_urlsafe(24))
        return self._dummy

    @staticmethod
    def _verify(hashed: str, password: str) -> bool:
        from argon2.exceptions import VerificationError, VerifyMismatchError

        try:
            with _ARGON2_AT_ONCE:
                return bool(_hasher().verify(hashed, password))
        except (VerifyMismatchError, VerificationError):
            return False
        except Exception:  # noqa: BLE001 - a malformed stored hash: no sign-in, never a crash
            return False

    def _failed(self, actor: str, body: dict[str, object]) -> None:
        self.ledger.account_event("sign_in_failed", actor, body)

    def _wrong_password(self, user: StaffUser, now: dt.datetime) -> None:
        """Count a wrong password; the 20th in a row locks the account for a while."""
        locked: list[bool] = []

        def count(session: Session) -> None:
            row = session.get(StaffUser, user.id)
            if row is None:
                return
            row.failed_logins += 1
            if row.failed_logins >= LOCK_AFTER:
                row.failed_logins, row.locked_until = 0, now + LOCK_FOR
                locked.append(True)

        self.ledger.account_event("sign_in_failed", user.name,
                                  {"user": user.name, "reason": "wrong password"}, change=count)
        if locked:
            self.ledger.account_event("account_locked", user.name, {
                "user": user.name, "until": (now + LOCK_FOR).isoformat()})

