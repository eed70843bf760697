"""Digests of what scrub writes: proof that a restructuring changed no output byte.

Runs, from fixed keys and fixed seeds, ``scrub demo`` (a small sample: apply, list store, ledger,
both release variants) and the benchmarks' apply and release jobs at a small size, then prints the
sha256 of every file they wrote, one ``DIGEST  PATH`` line each, sorted. Two runs of the same code
give the same lines: the inputs, list stores and ledgers (random nonces, dated events) are made
once and kept under ``bench/.cache/digests`` from run to run, the outputs are rewritten each run.
``--compare OLD`` prints every file whose digest differs from an earlier run's, except the few
dated by design (:data:`VOLATILE`), and exits 1 if any does.

Usage: ``python bench/digests.py [--out FILE] [--compare OLD_FILE] [--work FOLDER]``
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

#: Where the runs go (``--work``). Job identities name their input folder's absolute path, so
#: two runs compare only when made in the same folder.
WORK = ROOT / ".cache" / "digests"
#: Dated by design: the demo records each release in its ledger (timestamped, HMAC-chained events),
#: and each variant's manifest, signature, audit and keyed removal list name that ledger's head.
#: The demo's release shards are still compared, and the benchmark's release (no ledger updates)
#: is compared whole.
VOLATILE = ("demo/ledger.db", "demo/release/research.scrub/", "demo/release/research-safe.scrub/")


def _fixed_keys(folder: Path) -> None:
    """A data key and an Ed25519 signing pair derived from constants, as scrub's files hold them."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data.key"
    data.write_bytes(base64.b64encode(hashlib.sha256(b"scrub digests data key").digest()) + b"\n")
    os.chmod(data, 0o600)
    private = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"scrub digests sign").digest())
    pem = folder / "signing.pem"
    pem.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    os.chmod(pem, 0o600)
    (folder / "signing.pub").write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def _fix_mtimes(folder: Path) -> None:
    for path in folder.rglob("*"):
        os.utime(path, ns=(1_800_000_000_000_000_000, 1_800_000_000_000_000_000))


def _scrub(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "scrub", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def run() -> None:
    from scrub.crypto import load_key
    from scrub.lists.store import ListStore
    from scrub.synthetic import generate_dataset, random_md5s, read_column, write_hashlist

    # The inputs, list stores and ledgers are kept from run to run (an encrypted list copy, a
    # ledger event are random or dated, and a release's id derives from them); the outputs go.
    for output in ("demo/scrubbed", "demo/scrubbed.scrub", "demo/release", "apply", "apply.scrub",
                   "release/out"):
        shutil.rmtree(WORK / output, ignore_errors=True)
    env = dict(os.environ, SCRUB_HOME=str(WORK / "release" / "home"))
    demo = WORK / "demo"
    _fixed_keys(demo)
    # Twice: the second run reuses the generated sample, whose files then carry a fixed mtime (the
    # release id and the completion markers are derived from the inputs' identity).
    _scrub("demo", "--workdir", str(demo), "--quiet", "--workers", "2", env=env)
    _fix_mtimes(demo / "dataset")
    _scrub("demo", "--workdir", str(demo), "--quiet", "--workers", "2", env=env)

    # The benchmarks' jobs at a small size: apply with an md5 list, both release variants.
    data = generate_dataset(WORK / "dataset", rows=200_000, shards=4, seed=42, embeddings=False)
    _fix_mtimes(data)
    md5 = read_column(data, "md5")
    listed = md5.gather(list(range(0, 200_000, 97))).to_numpy().astype(str)
    hashlist = write_hashlist(WORK / "md5.txt", [*listed, *random_md5s(5_000, seed=44)],
                              header="digests list")
    _scrub("apply", str(data), str(WORK / "apply"), "--hashlist", str(hashlist), "--quiet",
           "--workers", "2", env=env)
    rel = WORK / "release"
    _fixed_keys(rel)
    store = ListStore(rel / "store")
    if "bench-md5" not in store.catalog():
        store.import_list(hashlist, name="bench-md5", source="bench", version="1",
                          key=load_key(rel / "data.key"))
    _scrub("db", "upgrade", env=env)
    policies = ROOT.parent / "policies"
    _scrub("release", "build", str(data), str(rel / "out"), "--policy",
           str(policies / "research.toml"), "--policy", str(policies / "research-safe.toml"),
           "--signing-key", str(rel / "signing.pem"), "--store", str(rel / "store"),
           "--key-file", str(rel / "data.key"), "--workers", "2", "--no-ledger-update", "--quiet",
           "--release-id", "digests-1", env=env)


def digests() -> dict[str, str]:
    out = {}
    for path in sorted(WORK.rglob("*")):
        if path.is_file():
            out[path.relative_to(WORK).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def main() -> None:
    global WORK
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the digest lines here too")
    parser.add_argument("--compare", type=Path, help="an earlier run's digest file")
    parser.add_argument("--work", type=Path, default=WORK,
                        help="folder of the runs (the same for runs to compare)")
    args = parser.parse_args()
    WORK = args.work.resolve()
    run()
    found = digests()
    lines = "".join(f"{digest}  {path}\n" for path, digest in found.items())
    sys.stdout.write(lines)
    if args.out:
        args.out.write_text(lines)
    if args.compare:
        old = dict(reversed(line.split("  ", 1)) for line in args.compare.read_text().splitlines())
        changed = sorted(p for p in found.keys() | old.keys() if found.get(p) != old.get(p))
        real = [p for p in changed if not p.startswith(VOLATILE)]
        print(f"\n{len(found)} files; {len(changed) - len(real)} dated by design differ, "
              f"{len(real)} others differ", file=sys.stderr)
        for p in real:
            print(f"  DIFFERS: {p}", file=sys.stderr)
        sys.exit(1 if real else 0)


if __name__ == "__main__":
    main()
