"""``scrub nsfw``: rescore ``punsafe`` with LAION's CLIP-based NSFW head (extra ``nsfw``)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer

from scrub.cli import options
from scrub.cli.errors import handle_errors
from scrub.errors import UserInputError

nsfw_app = typer.Typer(help="NSFW rescoring with LAION's CLIP-based head (extra `nsfw`).",
                       no_args_is_help=True)


def _torch() -> None:
    """Refuse early, with the extra to install, when torch is missing."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UserInputError("NSFW rescoring needs torch", hint="pip install 'scrub[nsfw]'") \
            from None


@nsfw_app.command("rescore")
@handle_errors
def rescore_command(
    input: str = typer.Argument(..., help="A dataset: parquet shards with clip-retrieval "
                                "embeddings (img_emb/img_emb_{i}.npy) or an embedding column "
                                "(with --clip: webdataset tars); local, or s3://bucket/prefix."),
    output: str = typer.Argument(..., help="Folder for one parquet of scores per shard "
                                 "(local, or s3://bucket/prefix)."),
    head: Optional[Path] = typer.Option(None, "--head", metavar="WEIGHTS.safetensors",
                                        help="The NSFW head's weights (see `scrub nsfw "
                                        "convert`)."),
    arch: Optional[str] = typer.Option(None, "--arch", help="vit-l-14 or vit-b-32 (default: "
                                       "from the weights)."),
    sha256: Optional[str] = typer.Option(None, "--sha256", metavar="HEX",
                                         help="Refuse weights whose sha256 differs."),
    clip: Optional[Path] = typer.Option(None, "--clip", metavar="CHECKPOINT",
                                        help="A local open_clip ViT-L/14 checkpoint, to score "
                                        "images (webdataset tars) instead of embeddings."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cuda or cpu."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1,
                                             help="Rows per forward pass (default 65536)."),
    embedding_column: Optional[str] = typer.Option(None, "--embedding-column", metavar="NAME",
                                                   help="Read embeddings from this list "
                                                   "column instead of img_emb/*.npy."),
    clip_arch: Optional[str] = typer.Option(None, "--clip-arch", metavar="NAME|CONFIG.json",
                                            help="open_clip architecture of --clip (default "
                                            "ViT-L-14), or a local model config."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0,
                                          help="Image decoding processes (default: cores - 1)."),
    write_embeddings: bool = typer.Option(False, "--write-embeddings",
                                          help="With --clip: also write img_emb/img_emb_{i}.npy "
                                          "(float16) for later rescoring."),
    engine: str = options.ENGINE,
    address: Optional[str] = options.ADDRESS,
    model_config: Optional[Path] = typer.Option(None, "--model-config", metavar="TOML",
                                                help="The same settings from a file "
                                                "(flags win)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
) -> None:
    """Score every row's embedding with the NSFW head; write punsafe per shard."""
    _torch()
    from scrub.nsfw.settings import merge_settings, read_config, rescore_with
    from scrub.runtime import check_engine
    from scrub.storage import location

    check_engine(engine, address)
    flags = {"head": head, "arch": arch, "sha256": sha256, "clip": clip, "device": device,
             "batch_size": batch_size, "embedding_column": embedding_column,
             "clip_arch": clip_arch, "workers": workers,
             "write_embeddings": write_embeddings or None}
    settings = merge_settings(read_config(model_config), flags)
    result = rescore_with(input, output, settings, engine=engine, address=address,
                          progress=not quiet)
    report = result.report
    if as_json:
        typer.echo(json.dumps({**asdict(report), "model": result.model_id,
                               "device": result.device}, indent=2, sort_keys=True))
    elif not quiet:
        statuses = "".join(f", {k} {v:,}" for k, v in report.statuses.items())
        typer.echo(f"scored {report.scored:,} of {report.rows:,} rows in {report.shards} "
                   f"shard(s) on {result.device} ({report.skipped} already done{statuses}) "
                   f"into {location(output)}")


@nsfw_app.command("convert")
@handle_errors
def convert_command(
    source: Path = typer.Argument(..., help="A .pth/.pt state dict (read with weights_only: "
                                  "no code runs) or a safetensors file of another layout."),
    output: Path = typer.Argument(..., help="Where to write our safetensors head."),
    arch: Optional[str] = typer.Option(None, "--arch", help="vit-l-14 or vit-b-32 (default: "
                                       "from the weights)."),
) -> None:
    """Convert a ported NSFW head to scrub's safetensors layout; prints its sha256."""
    _torch()
    from scrub.nsfw.head import convert_state_dict, read_state_dict, save_head

    head = convert_state_dict(read_state_dict(source), arch=arch, where=str(source))
    digest = save_head(head, output)
    typer.echo(f"{output}: {head.arch.name} head, sha256 {digest}")


def register(app: typer.Typer) -> None:
    app.add_typer(nsfw_app, name="nsfw")
