"""What ``scrub apply`` is asked to remove, and the match plan built from it: hash-list files,
stored lists, the ledger's enforced items, and a score threshold with the scores it trusts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scrub.engine.plan import MatchOptions, MatchPlan, add_ledger_rules, plan_for_apply
from scrub.engine.reasons import Reason
from scrub.engine.rules import ScoreRule, Source
from scrub.engine.scores import RESCORED
from scrub.errors import UserInputError
from scrub.lists.hashlist import ListArgument, ListFormat, check_list_file
from scrub.lists.store import ListStore


@dataclass
class ApplyRequest:
    """The lists and rules of one apply run, as the command line gives them."""

    files: Sequence[ListArgument] = ()
    stored: Sequence[str] = ()
    store: Path | None = None
    key: bytes | None = None
    type_name: str | None = None
    fmt: ListFormat = ListFormat.auto
    site: str | None = None
    options: MatchOptions = field(default_factory=MatchOptions)
    ledger: bool = False
    db_url: str | None = None
    punsafe_above: float | None = None
    scores: Path | None = None
    trust_score: str | None = None

    def check(self) -> None:
        """Refuse an empty or inconsistent request before anything is read or written."""
        if not self.files and not self.stored and not self.ledger \
                and self.punsafe_above is None:
            raise UserInputError("nothing to apply: give at least one --hashlist FILE, "
                                 "--list NAME, --ledger or --punsafe-above T")
        for argument in self.files:  # before any reader opens it: a FIFO would block forever
            check_list_file(argument.path)

    @property
    def trusted(self) -> str:
        """Which punsafe a score threshold reads: ``stored`` or ``rescored``."""
        trusted = self.trust_score or ("rescored" if self.scores else "stored")
        if trusted not in ("stored", "rescored"):
            raise UserInputError(f"--trust-score {trusted!r}: choose stored or rescored")
        if trusted == "rescored" and self.scores is None:
            raise UserInputError("--trust-score rescored needs --scores DIR")
        if self.scores is not None and not self.scores.is_dir():
            raise UserInputError(f"--scores {self.scores}: no such folder")
        return trusted


def plan_builder(request: ApplyRequest) -> Callable[[], MatchPlan]:
    """A function building the request's plan (run by :func:`~scrub.apply.job.apply` while
    its workers start). Every list is read and validated before OUTPUT is touched."""
    trusted = request.trusted

    def build() -> MatchPlan:
        plan = plan_for_apply([a.path for a in request.files], request.stored,
                              store=ListStore(request.store) if request.store else None,
                              key=request.key, type_name=request.type_name, fmt=request.fmt,
                              site=request.site, options=request.options,
                              file_types=[a.type_name for a in request.files])
        if request.ledger:
            _add_ledger(plan, request)
        if request.scores is not None:
            plan.scores[RESCORED] = str(request.scores.resolve())
        if request.punsafe_above is not None:
            role = RESCORED if trusted == "rescored" else "punsafe"
            source = Source(id=len(plan.sources),
                            label=f"punsafe > {request.punsafe_above} ({trusted})",
                            kind="policy", digest="", sensitive=False, name="punsafe")
            plan.sources.append(source)
            plan.rules.append(ScoreRule(role, request.punsafe_above, Reason.NSFW, source))
        return plan

    return build


def _add_ledger(plan: MatchPlan, request: ApplyRequest) -> None:
    """The verified takedown requests' items as rules."""
    from scrub.ledger.db import make_engine
    from scrub.ledger.service import IdentitySeal, Ledger

    # the key opens the requests' items and authenticates the ledger's history
    book = Ledger(make_engine(request.db_url),
                  seal=IdentitySeal(request.key) if request.key else None)
    add_ledger_rules(plan, book.enforced_items(), watermark=book.watermark(),
                     options=request.options)
