"""The NSFW head: Keras' arithmetic, known answers, the safetensors format, checked loading and
the converter for ported state dicts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from scrub.errors import UserInputError
from scrub.nsfw.head import (
    ARCHS,
    NsfwHead,
    convert_state_dict,
    load_head,
    random_head,
    read_state_dict,
    save_head,
)


def reference(head: NsfwHead, x: np.ndarray) -> np.ndarray:
    """The head's arithmetic in float64 numpy, written from LAION's Keras model."""
    state = {k: v.double().numpy() for k, v in head.state_dict().items()}
    h = (x - state["mean"]) / np.maximum(np.sqrt(state["variance"]), 1e-7)
    for i in range(1, len(head.arch.hidden) + 1):
        h = np.maximum(h @ state[f"dense{i}.weight"].T + state[f"dense{i}.bias"], 0)
    return 1 / (1 + np.exp(-(h @ state["out.weight"].T + state["out.bias"])[:, 0]))


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_the_forward_pass_is_keras_arithmetic(arch: str) -> None:
    head = random_head(arch, seed=3)
    x = np.random.default_rng(1).standard_normal((257, ARCHS[arch].dim)) * 0.05
    got = head(torch.from_numpy(x).float()).detach().numpy()
    assert np.abs(got - reference(head, x)).max() < 1e-5
    assert got.shape == (257,) and ((got > 0) & (got < 1)).all()


def test_known_answers() -> None:
    head = NsfwHead(ARCHS["vit-b-32"])
    with torch.no_grad():
        for tensor in head.state_dict().values():
            tensor.zero_()
        head.variance.fill_(1.0)
        head.out.bias.fill_(math.log(3))  # every hidden unit 0: sigmoid(log 3) = 0.75
    x = torch.randn(4, 512)
    assert torch.allclose(head(x), torch.full((4,), 0.75))
    with torch.no_grad():
        head.dense1.weight.zero_()
        head.dense1.weight[0, 0] = 1.0   # h1 = relu(x0)
        head.dense2.weight[0, 0] = 1.0   # h2 = relu(h1)
        head.out.weight[0, 0] = 2.0      # logit = 2 * relu(x0) + log 3
        head.mean[0] = 1.0
        head.variance[0] = 4.0           # x0 -> (x0 - 1) / 2
    x = torch.zeros(3, 512)
    x[:, 0] = torch.tensor([5.0, 1.0, -3.0])  # normalised: 2, 0, -2
    expected = torch.sigmoid(torch.tensor([4.0, 0.0, 0.0]) + math.log(3))
    assert torch.allclose(head(x), expected, atol=1e-6)


def test_a_zero_variance_is_floored_as_keras_does() -> None:
    head = random_head("vit-b-32", seed=2)
    with torch.no_grad():
        head.variance[:10] = 0.0
    x = np.random.default_rng(2).standard_normal((8, 512)) * 1e-8
    got = head(torch.from_numpy(x).float()).detach().numpy()
    assert np.isfinite(got).all()
    assert np.abs(got - reference(head, x)).max() < 1e-4


def test_non_finite_rows_are_flagged() -> None:
    head = random_head("vit-l-14")
    x = torch.randn(5, 768) * 0.02
    x[1, 7], x[3, 700] = float("nan"), float("inf")
    _, finite = head.score(x)
    assert finite.tolist() == [True, False, True, False, True]


def test_safetensors_round_trip_pinned_hash_and_checked_shapes(tmp_path: Path) -> None:
    head = random_head("vit-l-14", seed=5)
    path = tmp_path / "head.safetensors"
    digest = save_head(head, path)
    loaded = load_head(path, sha256=digest.upper())
    assert loaded.head.arch.name == "vit-l-14" and loaded.sha256 == digest
    assert digest in loaded.model_id
    x = torch.randn(16, 768) * 0.05
    assert torch.equal(loaded.head(x), head(x))
    with pytest.raises(UserInputError, match=r"head.safetensors: sha256 is .* not the pinned"):
        load_head(path, sha256="0" * 64)
    with pytest.raises(UserInputError, match="needs"):
        load_head(path, arch="vit-b-32")

    from safetensors.torch import save_file

    tensors = {k: v.clone() for k, v in head.state_dict().items()}
    tensors["dense2.weight"] = torch.zeros(512, 65)
    save_file(tensors, tmp_path / "bad.safetensors")
    with pytest.raises(UserInputError, match=r"bad.safetensors: tensor dense2.weight has shape "
                                             r"\(512, 65\)"):
        load_head(tmp_path / "bad.safetensors")
    del tensors["dense2.weight"]
    save_file(tensors, tmp_path / "missing.safetensors")
    with pytest.raises(UserInputError, match="missing tensor.*dense2.weight"):
        load_head(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a model at all")
    with pytest.raises(UserInputError, match="junk.safetensors: not a safetensors file"):
        load_head(tmp_path / "junk.safetensors")


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_ported_state_dicts_convert_to_the_same_head(tmp_path: Path, arch: str) -> None:
    head = random_head(arch, seed=9)
    state = head.state_dict()
    layers = [n[:-len(".weight")] for n in state if n.endswith(".weight")]
    # a Keras-like port: Keras layer names, (in, out) kernels, a 'count' beside mean/variance
    keras = {"normalization.mean": state["mean"].reshape(1, -1),
             "normalization.variance": state["variance"].reshape(1, -1),
             "normalization.count": torch.tensor(1000)}
    for i, layer in enumerate(layers):
        name = "dense" if i == 0 else f"dense_{i}"
        keras[f"{name}.kernel"] = state[f"{layer}.weight"].t().clone()
        keras[f"{name}.bias"] = state[f"{layer}.bias"]
    # an nn.Sequential port: indexed Linear layers with ReLUs between them
    sequential = {"norm.mean": state["mean"], "norm.var": state["variance"]}
    for i, layer in enumerate(layers):
        sequential[f"model.{2 * i}.weight"] = state[f"{layer}.weight"]
        sequential[f"model.{2 * i}.bias"] = state[f"{layer}.bias"]
    x = torch.randn(32, ARCHS[arch].dim) * 0.05
    for layout in (keras, sequential):
        path = tmp_path / "port.pth"
        torch.save(layout, path)
        converted = convert_state_dict(read_state_dict(path), where=str(path))
        assert converted.arch.name == arch
        assert torch.allclose(converted(x), head(x), atol=1e-6)
    with pytest.raises(UserInputError, match="normalization mean and variance"):
        convert_state_dict({"dense.weight": torch.zeros(2, 2)})


def test_a_pickle_with_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "config": Path("/etc")}, path)
    with pytest.raises(UserInputError, match="evil.pth: not a torch state dict"):
        read_state_dict(path)
