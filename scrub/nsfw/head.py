"""LAION's CLIP-based NSFW head in torch, stored as safetensors (background: docs/design/nsfw.md).

The head reads a CLIP image embedding: a Keras ``Normalization``, dense layers with ReLU, one
sigmoid unit (``vit-l-14``: 768 -> 64 -> 512 -> 256 -> 1; ``vit-b-32``: 512 -> 32 -> 32 -> 1).
On disk (safetensors, float32): ``mean`` and ``variance`` (applied as Keras does:
``(x - mean) / max(sqrt(variance), 1e-7)``), then ``dense1.weight``, ``dense1.bias``,
``dense2.*``, ``dense3.*`` (vit-l-14 only), ``out.weight``, ``out.bias``, in torch's ``Linear``
layout (``weight`` is ``(out_features, in_features)``). Other layouts (a ported ``.pth``) go
through :func:`convert_state_dict`; ``.pth`` files are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from scrub.errors import UserInputError

#: Keras' Normalization floor on the standard deviation.
EPSILON = 1e-7


@dataclass(frozen=True)
class Arch:
    name: str
    dim: int
    hidden: tuple[int, ...]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor's expected shape, by name."""
        out: dict[str, tuple[int, ...]] = {"mean": (self.dim,), "variance": (self.dim,)}
        sizes = (self.dim, *self.hidden, 1)
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes), start=1):
            name = f"dense{i}" if i <= len(self.hidden) else "out"
            out[f"{name}.weight"] = (fan_out, fan_in)
            out[f"{name}.bias"] = (fan_out,)
        return out


ARCHS = {"vit-l-14": Arch("vit-l-14", 768, (64, 512, 256)),
         "vit-b-32": Arch("vit-b-32", 512, (32, 32))}


class NsfwHead(nn.Module):
    """The head's forward pass: normalization, dense + ReLU layers, a sigmoid unit."""

    # Registered in __init__ (buffers and modules by name); declared for the type checker.
    mean: torch.Tensor
    variance: torch.Tensor
    dense1: nn.Linear

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        self.arch = arch
        self.register_buffer("mean", torch.zeros(arch.dim))
        self.register_buffer("variance", torch.ones(arch.dim))
        sizes = (arch.dim, *arch.hidden)
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes), start=1):
            self.add_module(f"dense{i}", nn.Linear(fan_in, fan_out))
        self.out = nn.Linear(sizes[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(x)[0]

    def score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores, finite): ``finite`` is False for rows holding NaN or infinity (their score
        is meaningless). Checked on the first layer's output, which any non-finite input value
        makes non-finite, at a twelfth of the cost of checking the 768 inputs."""
        scale = torch.sqrt(self.variance).clamp_min(EPSILON)
        x = self.dense1((x - self.mean) / scale)
        finite = torch.isfinite(x).all(dim=-1)
        x = torch.relu(x)
        for i in range(2, len(self.arch.hidden) + 1):
            x = torch.relu(getattr(self, f"dense{i}")(x))
        return torch.sigmoid(self.out(x)).squeeze(-1), finite


def random_head(arch: str = "vit-l-14", *, seed: int = 0) -> NsfwHead:
    """A head with random weights and a random normalization (tests and benchmarks)."""
    generator = torch.Generator().manual_seed(seed)
    head = NsfwHead(ARCHS[arch])
    with torch.no_grad():
        for name, tensor in head.state_dict().items():
            if name == "variance":
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.02 + 1e-4)
            elif name == "mean":
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.02)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator)
                             / max(tensor.shape[-1], 1) ** 0.5)
    return head.eval()


def save_head(head: NsfwHead, path: Path) -> str:
    """Write the head as safetensors (atomically); its sha256."""
    from safetensors.torch import save

    from scrub.atomic import atomic_write_bytes

    tensors = {name: t.detach().to(torch.float32).contiguous().cpu()
               for name, t in head.state_dict().items()}
    data = save(tensors, metadata={"format": "scrub-nsfw-head", "arch": head.arch.name})
    atomic_write_bytes(Path(path), data)
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class LoadedHead:
    head: NsfwHead
    sha256: str
    path: Path

    @property
    def model_id(self) -> str:
        """What score files record: the arch and the weights' hash."""
        return f"laion-clip-nsfw:{self.head.arch.name}:sha256:{self.sha256}"


def load_head(path: Path, *, arch: str | None = None, sha256: str | None = None) -> LoadedHead:
    """Read a head from safetensors, checking the pinned hash and every tensor's shape; errors
    name the file and the tensor. ``arch`` defaults to the one the ``mean`` width implies."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserInputError(f"{path}: cannot read the NSFW head ({exc.strerror})") from None
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256.strip().lower():
        raise UserInputError(f"{path}: sha256 is {digest}, not the pinned {sha256.strip()}",
                             hint="the weights file changed; check where it came from")
    try:
        tensors = load(data)
    except (SafetensorError, ValueError) as exc:
        raise UserInputError(f"{path}: not a safetensors file ({exc})",
                             hint="convert a .pth state dict with `scrub nsfw convert`") from None
    return LoadedHead(_build(tensors, arch, str(path)), digest, path)


def _build(tensors: Mapping[str, torch.Tensor], arch: str | None, where: str) -> NsfwHead:
    if arch is None:
        mean = tensors.get("mean")
        widths = {a.dim: a for a in ARCHS.values()}
        if mean is None or mean.ndim != 1 or mean.shape[0] not in widths:
            raise UserInputError(f"{where}: no 'mean' tensor of width 768 or 512",
                                 hint="pass --arch, or check the file's tensor names")
        chosen = widths[mean.shape[0]]
    elif arch not in ARCHS:
        raise UserInputError(f"unknown arch {arch!r}; choose from {', '.join(ARCHS)}")
    else:
        chosen = ARCHS[arch]
    expected = chosen.shapes()
    for name, shape in expected.items():
        if name in tensors and tuple(tensors[name].shape) != shape:
            raise UserInputError(f"{where}: tensor {name} has shape "
                                 f"{tuple(tensors[name].shape)}, {chosen.name} needs {shape}")
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise UserInputError(f"{where}: missing tensor(s) {', '.join(missing)} for "
                             f"{chosen.name}")
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise UserInputError(f"{where}: unexpected tensor(s) {', '.join(extra)} for "
                             f"{chosen.name}")
    for name in expected:
        if not torch.isfinite(tensors[name]).all():
            raise UserInputError(f"{where}: tensor {name} holds NaN or infinite values")
    head = NsfwHead(chosen)
    head.load_state_dict({k: v.to(torch.float32) for k, v in tensors.items()})
    return head.eval()


def convert_state_dict(state: Mapping[str, torch.Tensor], *, arch: str | None = None,
                       where: str = "state dict") -> NsfwHead:
    """A head from another layout of the same model, by this documented mapping:

    - our own names are taken as they are;
    - else the normalization is the 1-D tensors named ``*mean`` and ``*variance`` (or ``*var``);
      Keras' ``count`` and torch's ``num_batches_tracked`` are ignored;
    - the dense layers are the 2-D ``*weight`` (Keras: ``*kernel``) tensors with the ``*bias`` of
      the same prefix, in the file's order, the last being ``out`` (Keras names such as ``dense_1``
      and ``nn.Sequential`` indices such as ``model.0.weight``);
    - ``(in, out)`` weights (Keras) are transposed, as the first layer's shape shows.
    """
    if all(name in state for name in ("mean", "variance", "out.weight")):
        return _build(dict(state), arch, where)
    names = list(state)
    mean = [n for n in names if re.search(r"(^|[._])mean$", n) and state[n].numel() > 1]
    variance = [n for n in names if re.search(r"(^|[._])var(iance)?$", n)
                and state[n].numel() > 1]
    if len(mean) != 1 or len(variance) != 1:
        raise UserInputError(f"{where}: cannot find one normalization mean and variance "
                             f"(found {len(mean)} and {len(variance)})")
    layers = []
    for name in names:
        match = re.fullmatch(r"(.*?)(weight|kernel)", name)
        if match and state[name].ndim == 2:
            prefix = match.group(1)
            bias = next((prefix + b for b in ("bias",) if prefix + b in state), None)
            if bias is None:
                raise UserInputError(f"{where}: layer {name} has no bias ({prefix}bias)")
            layers.append((state[name], state[bias]))
    if not layers:
        raise UserInputError(f"{where}: no dense layers (2-D weight tensors) found")
    dim = state[mean[0]].reshape(-1).shape[0]
    transpose = layers[0][0].shape[0] == dim and layers[0][0].shape[1] != dim
    tensors: dict[str, torch.Tensor] = {"mean": state[mean[0]].reshape(-1),
                                        "variance": state[variance[0]].reshape(-1)}
    for i, (weight, bias) in enumerate(layers, start=1):
        name = "out" if i == len(layers) else f"dense{i}"
        tensors[f"{name}.weight"] = (weight.t() if transpose else weight).contiguous()
        tensors[f"{name}.bias"] = bias.reshape(-1)
    return _build(tensors, arch, where)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.pth``/``.pt`` state dict (``weights_only``: no code is run) or of a
    safetensors file; a ``{"state_dict": ...}`` wrapper is unwrapped."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise UserInputError(f"{path}: cannot read ({exc.strerror})") from None
    except Exception as exc:  # noqa: BLE001 - an unreadable file, whatever the library raises
        raise UserInputError(f"{path}: not a torch state dict ({type(exc).__name__})") from None
    if isinstance(loaded, Mapping) and "state_dict" in loaded:
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(
            isinstance(v, torch.Tensor) for v in loaded.values()):
        raise UserInputError(f"{path}: not a state dict of tensors")
    return dict(loaded)
