"""Release policies: the shipped Re-LAION pair, inheritance, and errors naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from scrub.errors import UserInputError
from scrub.release.policy import ScoreThreshold, load_policy, stock_policies

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def test_the_shipped_policies_are_re_laions_variants() -> None:
    research = load_policy(POLICIES / "research.toml")
    safe = load_policy(POLICIES / "research-safe.toml")
    assert research.lists == ["*"] and research.ledger and research.score == "stored"
    assert research.thresholds == [ScoreThreshold(0.95, keywords=True)]
    assert safe.thresholds == [ScoreThreshold(0.95, keywords=True), ScoreThreshold(0.45)]
    assert safe.lists == research.lists and safe.keywords == research.keywords
    assert "nude" in research.keywords and len(research.sha256) == 64
    assert safe.sha256 != research.sha256


def test_the_content_hash_covers_the_keyword_file(tmp_path: Path) -> None:
    (tmp_path / "k.txt").write_text("alpha\n")
    policy = tmp_path / "p.toml"
    policy.write_text('[policy]\nname = "p"\n[[nsfw.rules]]\nabove = 0.9\nkeywords = true\n'
                      '[keywords]\nfile = "k.txt"\n')
    before = load_policy(policy).sha256
    (tmp_path / "k.txt").write_text("alpha\nbeta\n")
    after = load_policy(policy)
    assert after.keywords == ["alpha", "beta"] and after.sha256 != before


@pytest.mark.parametrize(("text", "message"), [
    ('[policy]\nname = "x"\n[lists]\nnames = "all"\n', "lists.names must be a list"),
    ('[policy]\nname = "x"\ncolour = 1\n', r"unknown key\(s\) colour in \[policy\]"),
    ('[release]\nname = "x"\n', r"unknown section \[release\]"),
    # once accepted and ignored (a setting that did nothing): refused like any unknown section
    ('[policy]\nname = "x"\n[output]\nlayout = "flat"\n', r"unknown section \[output\]"),
    ('[policy]\nname = "a b"\n', "must be letters, digits"),
    ('[policy]\nname = "x"\n[nsfw]\nscore = "best"\n', 'nsfw.score must be "stored"'),
    ('[policy]\nname = "x"\n[[nsfw.rules]]\nabove = true\n', r"nsfw.rules\[0\].above"),
    ('[policy]\nname = "x"\n[[nsfw.rules]]\nabove = 0.5\nkeywords = true\n', "no \\[keywords\\]"),
    ('[policy]\nname = "x"\nextends = "self.toml"\n', "'extends' forms a cycle"),
    ('[policy\nname = "x"\n', "not valid TOML"),
])
def test_bad_policies_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "self.toml"
    path.write_text(text)
    with pytest.raises(UserInputError, match=message) as info:
        load_policy(path)
    assert str(path) in info.value.message


def test_a_bare_name_is_the_stock_policy() -> None:
    for name in ("research", "research-safe"):
        stock = load_policy(name)
        same = load_policy(POLICIES / f"{name}.toml")
        assert stock.name == name and stock.sha256 == same.sha256
    assert list(stock_policies()) == ["research", "research-safe"]


def test_a_policy_file_in_the_current_folder_is_still_a_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "research.toml").write_text('[policy]\nname = "mine"\n')
    monkeypatch.chdir(tmp_path)
    assert load_policy("research.toml").name == "mine"
    assert load_policy("./research.toml").name == "mine"
    assert load_policy("research").name == "research"  # a bare name: the stock one


def test_an_unknown_bare_name_lists_the_stock_policies() -> None:
    with pytest.raises(UserInputError) as info:
        load_policy("reserch")
    assert info.value.exit_code == 2
    assert "'reserch'" in info.value.message
    assert "research, research-safe" in info.value.message
