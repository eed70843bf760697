"""The command line as a user meets it (issue 21, section 4): per-file list types, public
opt-out lists, rows removed for several reasons, a closed output pipe, one help style, keys
named alike, and --json on the commands that change something."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer

from scrub.cli.main import app
from scrub.synthetic import read_column
from tests.helpers import expect_ok, run_cli


@pytest.fixture(scope="module")
def urls(sample_dataset: Path) -> list[str]:
    return read_column(sample_dataset, "URL").to_list()


@pytest.fixture
def domains(tmp_path: Path, urls: list[str]) -> Path:
    """A plain-text opt-out list of one registrable domain that some rows use, and one that no
    row uses."""
    path = tmp_path / "domains.txt"
    path.write_text("pinimg.com\nnowhere-at-all.example\n")
    return path


@pytest.fixture
def md5s(tmp_path: Path, planted_values) -> Path:
    path = tmp_path / "partner.txt"
    path.write_text("".join(f"{v}\n" for v in planted_values["md5"]))
    return path


def apply_json(dataset: Path, out: Path, *args: object):
    return run_cli("apply", dataset, out, *args, "--workers", "1", "--quiet", "--json")


# --------------------------------------------------------------------------- per-file type


def test_a_type_prefix_names_one_lists_type(sample_dataset: Path, tmp_path: Path,
                                            domains: Path, md5s: Path) -> None:
    result = apply_json(sample_dataset, tmp_path / "out", "--hashlist", f"domain:{domains}",
                        "--hashlist", md5s)
    expect_ok(result)
    report = json.loads(result.stdout)
    assert report["removed_by_list"]["partner.txt"] == 37
    assert report["removed_by_list"]["domains.txt"] > 0
    assert report["removed_by_reason"]["optout_domain"] > 0


def test_the_type_hint_leads_to_a_command_that_works(sample_dataset: Path, tmp_path: Path,
                                                     domains: Path, md5s: Path) -> None:
    refused = apply_json(sample_dataset, tmp_path / "out", "--hashlist", domains,
                         "--hashlist", md5s)
    assert refused.exit_code == 2
    hint = refused.stderr.splitlines()[1]
    assert f"--hashlist TYPE:{domains}" in hint
    followed = apply_json(sample_dataset, tmp_path / "out", "--hashlist",
                          f"domain:{domains}", "--hashlist", md5s)
    expect_ok(followed)


def test_a_path_holding_a_colon_is_read_as_the_file(sample_dataset: Path, tmp_path: Path,
                                                    planted_values) -> None:
    odd = tmp_path / "domain:partner.txt"  # an existing file, whatever its name looks like
    odd.write_text("".join(f"{v}\n" for v in planted_values["md5"]))
    result = apply_json(sample_dataset, tmp_path / "out", "--hashlist", odd)
    expect_ok(result)
    assert json.loads(result.stdout)["removed_by_reason"] == {"content_hash": 37}


def test_an_unknown_per_file_type_is_one_line_exit_2_nothing_written(
        sample_dataset: Path, tmp_path: Path, domains: Path) -> None:
    result = run_cli("apply", sample_dataset, tmp_path / "out", "--hashlist",
                    f"domian:{domains}")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"scrub: error: {domains}: unknown list type 'domian'")
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.scrub").exists()


# --------------------------------------------------------------------------- sensitivity


def test_opt_out_lists_given_with_hashlist_are_public(sample_dataset: Path, tmp_path: Path,
                                                      domains: Path) -> None:
    """Without a key, a public list's decision records are kept (plain), and its entries that
    matched nothing are named with --json."""
    result = apply_json(sample_dataset, tmp_path / "out", "--hashlist", domains,
                        "--type", "domain")
    expect_ok(result)
    report = json.loads(result.stdout)
    assert "withheld" not in report["decision_records"]
    assert len(report["unmatched_entry_values"]["domains.txt"]) == 1


def test_hash_lists_given_with_hashlist_stay_sensitive(sample_dataset: Path, tmp_path: Path,
                                                       md5s: Path) -> None:
    result = apply_json(sample_dataset, tmp_path / "out", "--hashlist", md5s)
    expect_ok(result)
    report = json.loads(result.stdout)
    assert report["decision_records"].get("withheld", 0) > 0
    assert "partner.txt" not in report["unmatched_entry_values"]


# --------------------------------------------------------------------------- several reasons


def test_reports_count_the_rows_removed_for_several_reasons(sample_dataset: Path,
                                                            tmp_path: Path, planted,
                                                            planted_values, urls) -> None:
    """The 37 md5-listed rows are also listed by URL: each counts under both reasons, and the
    report and the summary say how many rows that is."""
    md5 = tmp_path / "partner.txt"
    md5.write_text("".join(f"{v}\n" for v in planted_values["md5"]))
    listed = tmp_path / "urls.txt"
    listed.write_text("".join(f"{urls[int(row)]}\n" for row in planted["md5"][:10]))
    args = ("--hashlist", md5, "--hashlist", f"url:{listed}")
    result = apply_json(sample_dataset, tmp_path / "out", *args)
    expect_ok(result)
    report = json.loads(result.stdout)
    assert report["rows_removed"] == 37
    assert sum(report["removed_by_reason"].values()) == 47
    assert report["rows_with_several_reasons"] == 10
    human = run_cli("apply", sample_dataset, tmp_path / "out2", *args, "--workers", "1", "-q")
    assert "rows removed for several reasons (counted under each): 10" in human.stdout


# --------------------------------------------------------------------------- closed pipe


def test_output_into_a_closed_pipe_ends_quietly_with_the_sigpipe_status(tmp_path: Path) -> None:
    """``scrub ... | head`` where head has gone: no error line, no traceback, exit 141."""
    process = subprocess.Popen([sys.executable, "-m", "scrub", "keygen", "-o",
                                str(tmp_path / "k.key")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before scrub writes
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141
    assert stderr == ""


# --------------------------------------------------------------------------- help


def _commands(command: click.Command, path: tuple[str, ...] = ()):
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield path, command


def test_every_option_of_every_command_is_described_in_one_style() -> None:
    """Every option has help text; values show an upper-case placeholder; flags show as flags
    (no <bool>, <str>, <int range> or other typer type labels)."""
    root = typer.main.get_command(app)
    seen = 0
    for path, command in _commands(root):
        context = click.Context(command, info_name=" ".join(path))
        for param in command.params:
            if param.param_type_name != "option" or param.hidden:
                continue
            seen += 1
            shown, described = param.get_help_record(context)
            where = f"scrub {' '.join(path)} {param.opts[0]}"
            assert param.help, f"{where}: no help text"
            assert "<" not in shown, f"{where}: shown as {shown!r}"
            placeholder = shown.split(" ")[-1] if not param.is_flag else ""
            # a placeholder in capitals, or the literal choices (local|ray)
            stem = placeholder.split(".")[0]  # REQUEST.json: a placeholder and its suffix
            assert stem == stem.upper() or "|" in placeholder, \
                f"{where}: shown as {shown!r}"
    assert seen > 100
    text = run_cli("release", "build", "--help").stdout
    assert "<bool>" not in text and "--allow-empty " in text


# --------------------------------------------------------------------------- keys


def test_keygen_and_the_demo_name_a_signing_pair_alike(tmp_path: Path) -> None:
    result = run_cli("keygen", "--signing", "-o", tmp_path / "signing.pem", "--json")
    expect_ok(result)
    shown = json.loads(result.stdout)
    assert shown["public_key"] == str(tmp_path / "signing.pub")  # as the demo's signing.pub
    assert (tmp_path / "signing.pub").is_file()


def test_lists_trust_takes_pubkey_and_keeps_key_as_a_hidden_alias(tmp_path: Path) -> None:
    pair = json.loads(run_cli("keygen", "--signing", "-o", tmp_path / "s.pem", "--json").stdout)
    store = tmp_path / "store"
    first = run_cli("lists", "trust", "--source", "acme", "--pubkey", pair["public_key"],
                   "--store", store, "--json")
    expect_ok(first)
    assert json.loads(first.stdout)["fingerprint"] == pair["fingerprint"]
    again = run_cli("lists", "trust", "--source", "acme2", "--key", pair["public_key"],
                   "--store", store)
    expect_ok(again)
    assert "--key " not in run_cli("lists", "trust", "--help").stdout


# --------------------------------------------------------------------------- --json


def test_lists_rm_and_verify_answer_in_json(tmp_path: Path, domains: Path) -> None:
    store = tmp_path / "store"
    imported = run_cli("lists", "import", domains, "--name", "optout", "--source", "s",
                      "--version", "1", "--type", "domain", "--store", store)
    expect_ok(imported)
    verified = run_cli("lists", "verify", "--store", store, "--json")
    expect_ok(verified)
    assert json.loads(verified.stdout)["ok"] is True
    removed = run_cli("lists", "rm", "optout", "--store", store, "--json")
    expect_ok(removed)
    assert json.loads(removed.stdout) == {"removed": ["optout@1"]}


def test_db_current_and_check_answer_in_json(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgraded = run_cli("db", "upgrade", "--db", url, "--json")
    expect_ok(upgraded)
    current = json.loads(run_cli("db", "current", "--db", url, "--json").stdout)
    assert current["current"] is True and current["database"] == current["code"]
    checked = run_cli("db", "check", "--db", url, "--json")
    expect_ok(checked)
    assert json.loads(checked.stdout)["ok"] is True
