"""``scrub nsfw``: rescore ``punsafe`` with LAION's CLIP-based NSFW head (extra ``nsfw``)."""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer

from scrub.cli import options
from scrub.cli.errors import handle_errors
from scrub.errors import UserInputError

nsfw_app = typer.Typer(help="NSFW rescoring with LAION's CLIP-based head (extra `nsfw`).",
                       no_args_is_help=True)

#: Settings a --model-config TOML file may hold (flags given on the command line win).
CONFIG_KEYS = {"head", "arch", "sha256", "clip", "clip_arch", "device", "batch_size",
               "embedding_column", "workers", "write_embeddings"}


def _torch():  # type: ignore[no-untyped-def]
    try:
        import torch
    except ImportError:
        raise UserInputError("NSFW rescoring needs torch", hint="pip install 'scrub[nsfw]'") \
            from None
    return torch


def _config(path: Path | None) -> dict[str, object]:
    if path is None:
        return {}
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserInputError(f"{path}: cannot read ({exc.strerror})") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserInputError(f"{path}: not valid TOML ({exc})") from None
    section = config.get("nsfw", config)
    unknown = sorted(set(section) - CONFIG_KEYS)
    if unknown:
        raise UserInputError(f"{path}: unknown setting(s) {', '.join(unknown)}",
                             hint=f"settings: {', '.join(sorted(CONFIG_KEYS))}")
    # paths in the file are relative to the file
    for name in ("head", "clip", "clip_arch"):
        value = section.get(name)
        if value is not None and (name != "clip_arch" or str(value).endswith(".json")):
            section[name] = str((path.parent / str(value)).resolve())
    return section


@nsfw_app.command("rescore")
@handle_errors
def rescore_command(
    input: Path = typer.Argument(..., help="A dataset: parquet shards with clip-retrieval "
                                 "embeddings (img_emb/img_emb_{i}.npy) or an embedding column."),
    output: Path = typer.Argument(..., help="Folder for one parquet of scores per shard."),
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
    torch = _torch()
    from scrub.engine.distributed import check_engine
    from scrub.nsfw.head import load_head
    from scrub.nsfw.rescore import rescore, resolve_device

    check_engine(engine, address)
    config = _config(model_config)
    flags = {"head": head, "arch": arch, "sha256": sha256, "clip": clip, "device": device,
             "batch_size": batch_size, "embedding_column": embedding_column,
             "clip_arch": clip_arch, "workers": workers,
             "write_embeddings": write_embeddings or None}
    settings = {**config, **{k: v for k, v in flags.items() if v is not None}}
    if settings.get("head") is None:
        raise UserInputError("missing --head WEIGHTS.safetensors (or head = ... in "
                             "--model-config)")
    requested = str(settings.get("device", "auto"))
    if engine == "ray" and requested in ("auto", "cuda"):
        # the cluster's actors hold the GPUs, not necessarily this driver
        chosen = torch.device("cuda" if requested == "cuda" else "cpu")
    else:
        chosen = resolve_device(requested)
    loaded = load_head(Path(str(settings["head"])), arch=settings.get("arch"),  # type: ignore
                       sha256=settings.get("sha256"))  # type: ignore[arg-type]
    size = int(settings.get("batch_size", 65_536))  # type: ignore[call-overload]
    if settings.get("clip") is not None:
        from scrub.nsfw.images import rescore_images

        report = rescore_images(
            input, output, loaded, Path(str(settings["clip"])), device=chosen,
            batch_size=int(settings.get("batch_size", 256)),  # type: ignore[call-overload]
            clip_arch=str(settings.get("clip_arch", "ViT-L-14")),
            workers=settings.get("workers"),  # type: ignore[arg-type]
            write_embeddings=bool(settings.get("write_embeddings", False)),
            progress=not quiet, engine=engine, address=address,
            auto_device=requested == "auto")
    else:
        report = rescore(input, output, loaded, device=chosen, batch_size=size,
                         embedding_column=settings.get("embedding_column"),  # type: ignore
                         progress=not quiet, engine=engine, address=address,
                         workers=settings.get("workers") or None,  # type: ignore[arg-type]
                         auto_device=str(settings.get("device", "auto")) == "auto")
    if as_json:
        typer.echo(json.dumps({**asdict(report), "model": loaded.model_id,
                               "device": str(chosen)}, indent=2, sort_keys=True))
    elif not quiet:
        statuses = "".join(f", {k} {v:,}" for k, v in report.statuses.items())
        typer.echo(f"scored {report.scored:,} of {report.rows:,} rows in {report.shards} "
                   f"shard(s) on {chosen} ({report.skipped} already done{statuses}) "
                   f"into {output}")


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
