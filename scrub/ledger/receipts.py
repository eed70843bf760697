"""Requests filed through the web intake form (``scrub serve``, ``/request``).

A request is recorded by the ledger as ``scrub requests add`` records one (received now, due in
30 days), and in the same transaction a receipt: the keyed digest of the reference code the
requester is shown (100 random bits, Crockford base32), the keyed digest of their email, their
statement sealed to the request and the code, and the version of the consent text they agreed
to. Their status page needs the code and the email together; a wrong pair and an unknown code
get the same answer (None).
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from scrub.ledger.models import IntakeReceipt
from scrub.ledger.service import Ledger, RequestSpec, RequestView
from scrub.ledger.specs import check_text

#: The consent text's version a receipt records (the form shows that text).
CONSENT_VERSION = "2026-12-06"
#: Crockford's base32: no I, L, O, U (read back by people, typed again).
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})
CODE_CHARS = 20
STATEMENT_MAX = 5_000


@dataclass(frozen=True)
class Receipt:
    request_id: int
    created: bool
    code: str


def new_code() -> str:
    """A reference code: 20 base32 characters (100 bits) in groups of four."""
    chars = "".join(secrets.choice(_ALPHABET) for _ in range(CODE_CHARS))
    return "-".join(chars[i:i + 4] for i in range(0, CODE_CHARS, 4))


def normal_code(code: str) -> str | None:
    """A typed code in canonical form (case, dashes and spaces, O/I/L read as 0/1); None when
    it cannot be one."""
    text = "".join(code.split()).replace("-", "").upper().translate(_READ_AS)
    if len(text) != CODE_CHARS or any(c not in _ALPHABET for c in text):
        return None
    return text


class Intake:
    """Receipts of one ledger (its key: digests and seals)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.seal = ledger.require_seal()
        self._codes = self.seal.derived("intake-reference-code")

    def file(self, spec: RequestSpec, statement: str, actor: str = "web intake") -> Receipt:
        """Record a request and its receipt in one transaction."""
        check_text(statement, "the statement")
        code = new_code()
        digest = self._digest(normal_code(code) or "")
        lookup = self.seal.lookup(spec.email)

        def attach(session: Session, request_id: int, _created: bool) -> None:
            session.add(IntakeReceipt(
                code_digest=digest, request_id=request_id, requester_hash=lookup,
                statement=self.seal.seal_statement(request_id, digest, statement),
                consent=CONSENT_VERSION, created_at=dt.datetime.now(dt.UTC)))

        # never joined to an earlier request: the email is not verified yet, and joining would
        # tell whoever typed it that its owner asked about these items before
        request_id, created = self.ledger.add(spec, actor, attach=attach, join=False)
        return Receipt(request_id, created, code)

    def status(self, code: str, email: str) -> RequestView | None:
        """The request a code and an email lead to together; None for an unknown code and for
        a code with another email alike."""
        normal = normal_code(code)
        lookup = self.seal.lookup(email)
        with Session(self.ledger.engine) as session:
            receipt = session.scalars(select(IntakeReceipt).where(
                IntakeReceipt.code_digest == self._digest(normal or "-"))).first()
            found = receipt is not None and normal is not None
            match = hmac.compare_digest(receipt.requester_hash if receipt else "0" * 64, lookup)
            if not (found and match and receipt is not None):
                return None
            request_id = receipt.request_id
            # the statement is sealed to the request and the code: a receipt row pointed at
            # another request in the database does not open, and leads nowhere
            if self.seal.open_statement(receipt.statement, request_id, receipt.code_digest) \
                    is None:
                return None
        return self.ledger.show(request_id)

    def find(self, code: str) -> int | None:
        """The request a reference code was given for (staff look-up; no email needed)."""
        normal = normal_code(code)
        if normal is None:
            return None
        with Session(self.ledger.engine) as session:
            receipt = session.scalars(select(IntakeReceipt).where(
                IntakeReceipt.code_digest == self._digest(normal))).first()
            if receipt is None or self.seal.open_statement(
                    receipt.statement, receipt.request_id, receipt.code_digest) is None:
                return None
            return receipt.request_id

    def statements(self, request_id: int) -> list[dict[str, str | None]]:
        """The statements filed for a request (opened; None where one does not open)."""
        with Session(self.ledger.engine) as session:
            return [{"received_at": r.created_at.isoformat(), "consent": r.consent,
                     "statement": self.seal.open_statement(r.statement, request_id,
                                                           r.code_digest)}
                    for r in session.scalars(select(IntakeReceipt).where(
                        IntakeReceipt.request_id == request_id).order_by(IntakeReceipt.id))]

    def _digest(self, normal: str) -> str:
        return hmac.new(self._codes, normal.encode(), "sha256").hexdigest()
