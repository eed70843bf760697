"""Release policies: TOML files naming what a variant removes (example: docs/design/policies.md).

Keys: ``[policy]`` ``name`` (the variant's folder), ``description``, ``extends`` (a policy in the
same folder to start from); ``[lists]`` ``names`` (``"*"``: every block list; ``NAME``,
``NAME@latest`` or ``NAME@VERSION``); ``[ledger]`` ``requests`` (every verified request);
``[nsfw]`` ``score`` (``"stored"`` or ``"rescored"``) and ``[[nsfw.rules]]`` ``above``,
``keywords`` (only where the caption keyword filter flags the row); ``[keywords]`` ``file`` (one
term a line, ``#`` comments, relative to the policy) and/or ``terms``. The content hash (sha256 of
the file and of those it extends or reads) goes into the manifest; errors name the file and key.
A bare name (``research``) is a stock policy (``policies/``); a ``/`` or ``.toml`` makes a path.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrub.errors import InvalidDatasetError, UserInputError
from scrub.shipped import policies_folder

if TYPE_CHECKING:
    from scrub.storage import ObjectPath

_SECTIONS = {"policy": {"name", "description", "extends"}, "lists": {"names"},
             "ledger": {"requests"}, "nsfw": {"score", "rules"}, "keywords": {"file", "terms"}}


@dataclass(frozen=True)
class ScoreThreshold:
    above: float
    keywords: bool = False


@dataclass
class Policy:
    name: str
    path: Path
    description: str = ""
    lists: list[str] = field(default_factory=list)
    ledger: bool = False
    score: str = "stored"
    thresholds: list[ScoreThreshold] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    #: sha256 over the policy's own bytes and those of every file it extends or reads.
    sha256: str = ""

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "sha256": self.sha256, "lists": self.lists,
                "ledger": self.ledger, "score": self.score,
                "thresholds": [{"above": t.above, "keywords": t.keywords}
                               for t in self.thresholds],
                "keywords": len(self.keywords)}


def stock_policies() -> dict[str, Path]:
    """The stock policies by name (``research``, ``research-safe``) and their files."""
    return {path.stem: path for path in sorted(policies_folder().glob("*.toml"),
                                               key=lambda path: path.stem)}


def resolve_policy(ref: Path | str) -> Path:
    """The file a ``--policy`` names: a bare name (no ``/``, no ``.toml``) is a stock policy,
    anything else a path. An unknown bare name is a UserInputError listing the stock names."""
    text = str(ref)
    if "/" in text or os.sep in text or text.lower().endswith(".toml"):
        return Path(ref)
    stock = stock_policies()
    if text not in stock:
        raise UserInputError(f"no stock policy named {text!r}; the stock policies are "
                             f"{', '.join(stock)}",
                             hint="give one of those names, or a policy file's path "
                                  "(e.g. ./my-policy.toml)")
    return stock[text]


def load_policy(path: Path | str, *, _seen: tuple[Path, ...] = ()) -> Policy:
    """Parse and check a policy file (and the policies it extends); a bare name is a stock
    policy (:func:`resolve_policy`)."""
    path = resolve_policy(path) if not _seen else Path(path)
    if path.resolve() in _seen:
        raise UserInputError(f"{path}: 'extends' forms a cycle")
    raw, data = _read_policy(path)
    head = data.get("policy", {})
    digest = hashlib.sha256(raw)
    base: Policy | None = None
    if "extends" in head:
        parent = path.parent / _text(head["extends"], path, "policy.extends")
        base = load_policy(parent, _seen=(*_seen, path.resolve()))
        digest.update(base.sha256.encode())
    name = _text(head.get("name", path.stem), path, "policy.name")
    if not name.replace("-", "").replace("_", "").isalnum():
        raise UserInputError(f"{path}: policy.name {name!r} must be letters, digits, - or _ "
                             "(it names the variant's folder)")
    policy = Policy(name=name, path=path,
                    description=str(head.get("description", base.description if base else "")),
                    lists=list(base.lists) if base else [],
                    ledger=base.ledger if base else False,
                    score=base.score if base else "stored",
                    thresholds=list(base.thresholds) if base else [],
                    keywords=list(base.keywords) if base else [])
    _apply_lists_and_ledger(policy, data, path)
    _apply_nsfw(policy, data.get("nsfw", {}), path)
    if "keywords" in data:
        _apply_keywords(policy, data["keywords"], path, digest)
    if any(t.keywords for t in policy.thresholds) and not policy.keywords:
        raise UserInputError(f"{path}: a rule uses the keyword filter but the policy has no "
                             "[keywords]")
    policy.sha256 = digest.hexdigest()
    return policy


def _read_policy(path: Path) -> tuple[bytes, dict[str, Any]]:
    """The policy file's bytes and its TOML, with every section and key known."""
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise UserInputError(f"{path}: cannot read the policy ({exc.strerror})") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserInputError(f"{path}: not valid TOML ({exc})") from None
    for section, value in data.items():
        if section not in _SECTIONS:
            raise UserInputError(f"{path}: unknown section [{section}]",
                                 hint=f"sections: {', '.join(_SECTIONS)}")
        if not isinstance(value, dict):
            raise UserInputError(f"{path}: [{section}] must be a table")
        unknown = sorted(set(value) - _SECTIONS[section])
        if unknown:
            raise UserInputError(f"{path}: unknown key(s) {', '.join(unknown)} in [{section}]")
    return raw, data


def _apply_lists_and_ledger(policy: Policy, data: dict[str, Any], path: Path) -> None:
    if "lists" in data:
        names = data["lists"].get("names", [])
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise UserInputError(f"{path}: lists.names must be a list of list names")
        policy.lists = list(dict.fromkeys([*policy.lists, *names]))
    if "ledger" in data:
        requests = data["ledger"].get("requests", False)
        if not isinstance(requests, bool):
            raise UserInputError(f"{path}: ledger.requests must be true or false")
        policy.ledger = policy.ledger or requests


def _apply_nsfw(policy: Policy, nsfw: dict[str, Any], path: Path) -> None:
    if "score" in nsfw:
        if nsfw["score"] not in ("stored", "rescored"):
            raise UserInputError(f"{path}: nsfw.score must be \"stored\" or \"rescored\"")
        policy.score = nsfw["score"]
    for index, rule in enumerate(nsfw.get("rules", [])):
        threshold = _threshold(rule, path, f"nsfw.rules[{index}]")
        if threshold not in policy.thresholds:
            policy.thresholds.append(threshold)


def _threshold(rule: object, path: Path, where: str) -> ScoreThreshold:
    if not isinstance(rule, dict) or set(rule) - {"above", "keywords"}:
        raise UserInputError(f"{path}: {where} takes 'above' and 'keywords' only")
    above = rule.get("above")
    if isinstance(above, bool) or not isinstance(above, (int, float)) \
            or not 0.0 <= above <= 1.0:
        raise UserInputError(f"{path}: {where}.above must be a number from 0 to 1")
    keywords = rule.get("keywords", False)
    if not isinstance(keywords, bool):
        raise UserInputError(f"{path}: {where}.keywords must be true or false")
    return ScoreThreshold(float(above), keywords)


def _apply_keywords(policy: Policy, section: dict[str, Any], path: Path,
                    digest: hashlib._Hash) -> None:
    terms = section.get("terms", [])
    if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
        raise UserInputError(f"{path}: keywords.terms must be a list of strings")
    if "file" in section:
        listing = path.parent / _text(section["file"], path, "keywords.file")
        try:
            text = listing.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserInputError(f"{path}: keywords.file {listing}: cannot read "
                                 f"({type(exc).__name__})") from None
        digest.update(text.encode())
        terms = [*terms, *(line.strip() for line in text.splitlines()
                           if line.strip() and not line.lstrip().startswith("#"))]
    policy.keywords = list(dict.fromkeys([*policy.keywords, *terms]))


def check_score_columns(policies: Sequence[Policy], source: Path | ObjectPath | str, *,
                        overrides: Mapping[str, str] | None = None) -> None:
    """Before a build: a policy whose NSFW rules read the dataset's own ``punsafe`` needs that
    column, else one InvalidDatasetError naming the policy's rule, the column and the shard,
    with how to build without NSFW rules. Checked on the first shard (the build checks every
    one); a shard that cannot be read is left to the build, which names it."""
    stored = [(p, t) for p in policies if p.score == "stored" for t in p.thresholds]
    if not stored:
        return
    from scrub.dataset import detect_roles, discover_shards, open_parquet

    shard = discover_shards(source)[0].path
    try:
        schema = open_parquet(shard).schema_arrow
    except InvalidDatasetError:
        return
    if detect_roles(schema, overrides).get("punsafe") is not None:
        return
    policy, threshold = stored[0]
    rule = f"punsafe > {threshold.above}" + (" with a flagged caption" if threshold.keywords
                                             else "")
    raise InvalidDatasetError(
        f"policy {policy.name} ({policy.path}): its NSFW rule '{rule}' reads the column "
        f"punsafe, which {shard} lacks",
        hint="to build without NSFW rules, use a policy that has none, e.g. printf "
             "'[lists]\\nnames = [\"*\"]\\n[ledger]\\nrequests = true\\n' > no-nsfw.toml, then "
             "--policy no-nsfw.toml; or name the score column with --column punsafe=NAME, "
             "or rescore (scrub nsfw rescore) with nsfw.score = \"rescored\" and --scores DIR")


def _text(value: object, path: Path, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserInputError(f"{path}: {key} must be non-empty text")
    return value.strip()
