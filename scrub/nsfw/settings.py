"""The settings of ``scrub nsfw rescore``: a ``--model-config`` TOML file merged under the
command line's flags, the device chosen, and the one call that runs the right rescoring."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scrub.errors import UserInputError
from scrub.storage import ObjectPath

#: Settings a --model-config TOML file may hold (flags given on the command line win).
CONFIG_KEYS = {"head", "arch", "sha256", "clip", "clip_arch", "device", "batch_size",
               "embedding_column", "workers", "write_embeddings"}


def read_config(path: Path | None) -> dict[str, Any]:
    """The ``[nsfw]`` settings (or the top level) of a TOML file; paths in it are relative to
    the file. UserInputError for an unreadable file or an unknown setting."""
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
    for name in ("head", "clip", "clip_arch"):
        value = section.get(name)
        if value is not None and (name != "clip_arch" or str(value).endswith(".json")):
            section[name] = str((path.parent / str(value)).resolve())
    return dict(section)


def merge_settings(config: Mapping[str, Any], flags: Mapping[str, Any]) -> dict[str, Any]:
    """The file's settings with every flag given (not None) on top; a head is required."""
    settings = {**config, **{k: v for k, v in flags.items() if v is not None}}
    if settings.get("head") is None:
        raise UserInputError("missing --head WEIGHTS.safetensors (or head = ... in "
                             "--model-config)")
    return settings


@dataclass
class RescoreResult:
    """What a rescoring did, the model that scored and the device it was asked to run on."""

    report: Any
    model_id: str
    device: str


def rescore_with(source: str | Path | ObjectPath, output: str | Path | ObjectPath,
                 settings: Mapping[str, Any], *,
                 engine: str = "local", address: str | None = None,
                 progress: bool = True) -> RescoreResult:
    """Run embedding rescoring, or image rescoring when ``clip`` is set, with ``settings``
    (as :func:`merge_settings` gives them). On Ray, ``auto``/``cuda`` defer to the cluster's
    GPUs: the driver need not have one."""
    import torch

    from scrub.nsfw.head import load_head
    from scrub.nsfw.rescore import rescore, resolve_device

    requested = str(settings.get("device", "auto"))
    if engine == "ray" and requested in ("auto", "cuda"):
        chosen = torch.device("cuda" if requested == "cuda" else "cpu")
    else:
        chosen = resolve_device(requested)
    loaded = load_head(Path(str(settings["head"])), arch=settings.get("arch"),
                       sha256=settings.get("sha256"))
    if settings.get("clip") is not None:
        from scrub.nsfw.images import rescore_images

        report = rescore_images(
            source, output, loaded, Path(str(settings["clip"])), device=chosen,
            batch_size=int(settings.get("batch_size", 256)),
            clip_arch=str(settings.get("clip_arch", "ViT-L-14")),
            workers=settings.get("workers"),
            write_embeddings=bool(settings.get("write_embeddings", False)),
            progress=progress, engine=engine, address=address,
            auto_device=requested == "auto")
    else:
        report = rescore(source, output, loaded, device=chosen,
                         batch_size=int(settings.get("batch_size", 65_536)),
                         embedding_column=settings.get("embedding_column"),
                         progress=progress, engine=engine, address=address,
                         workers=settings.get("workers") or None,
                         auto_device=requested == "auto")
    return RescoreResult(report=report, model_id=loaded.model_id, device=str(chosen))
