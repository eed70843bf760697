"""Small release builds for the security tests of ``scrub release`` (items 7, 8, 13, 17, 18, 20):
a generated dataset, a signing key pair and a policy, built through the CLI."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from typer.testing import Result

from scrub.crypto import write_signing_keypair
from scrub.layout import companion
from scrub.synthetic import generate_dataset
from tests.helpers import run_cli


def nsfw_policy(folder: Path, name: str, above: float, *extra: str) -> Path:
    """A policy removing the rows whose stored punsafe is above ``above`` (plus ``extra``
    TOML lines)."""
    path = folder / f"{name}.toml"
    path.write_text(f'[policy]\nname = "{name}"\n[[nsfw.rules]]\nabove = {above}\n'
                    + "".join(f"{line}\n" for line in extra))
    return path


@dataclass
class Setup:
    root: Path
    data: Path
    policies: list[Path]
    private: Path
    public: Path

    def build(self, out: Path, *extra: str, data: Path | None = None) -> Result:
        args = ["release", "build", str(data or self.data), str(out),
                "--signing-key", str(self.private), "--workers", "1", "--quiet", "--json"]
        for policy in self.policies:
            args += ["--policy", str(policy)]
        return run_cli(*args, *extra)

    def verify(self, folder: Path, *extra: str, pubkey: Path | None = None) -> Result:
        return run_cli("release", "verify", str(folder), "--pubkey",
                       str(pubkey or self.public), *extra)

    def copy(self, folder: Path, target: Path) -> Path:
        shutil.copytree(folder, target, symlinks=True)
        return target

    def copy_variant(self, variant: Path, target: Path) -> Path:
        """A copy of ``variant`` (its folder of shards and its companion folder, which holds
        the manifest) under the folder ``target``; the copy's variant folder."""
        for folder in (variant, companion(variant)):
            self.copy(folder, target / folder.name)
        return target / variant.name


def make_setup(root: Path, *, rows: int = 3_000, shards: int = 3, embeddings: bool = True,
               seed: int = 4) -> Setup:
    """A dataset, two nested NSFW policies ("open": punsafe > 0.5, "safe": > 0.1) and a key
    pair."""
    data = generate_dataset(root / "data", rows=rows, shards=shards, seed=seed,
                            embeddings=embeddings)
    policies = [nsfw_policy(root, "open", 0.5), nsfw_policy(root, "safe", 0.1)]
    write_signing_keypair(root / "sign.pem", root / "sign.pub")
    return Setup(root, data, policies, root / "sign.pem", root / "sign.pub")
