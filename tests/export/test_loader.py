"""load_torch_member: factory resolution, tensor-only weights, clear errors."""

from __future__ import annotations

import textwrap

import pytest

torch = pytest.importorskip("torch")
st = pytest.importorskip("safetensors.torch")

from edge_committee.errors import EdgeCommitteeError  # noqa: E402
from edge_committee.export import load_torch_member, read_state_dict, resolve_factory  # noqa: E402

NET_PY = textwrap.dedent(
    """
    import torch

    class Net(torch.nn.Module):
        def __init__(self, width=4, classes=3):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, width, 3)
            self.fc = torch.nn.Linear(width, classes)

        def forward(self, x):
            return self.fc(self.conv(x).mean(dim=(2, 3)))

    def build(width=4, classes=3):
        return Net(width, classes)

    class Zoo:
        small = staticmethod(lambda: Net(2, 2))

    NOT_CALLABLE = 3

    def not_a_module():
        return 42
    """
)


@pytest.fixture()
def spec_dir(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "net.py").write_text(NET_PY)
    return tmp_path


def _saved_weights(spec_dir, suffix, **kwargs):
    module = load_torch_member("models/net.py:build", kwargs, base_dir=spec_dir)
    path = spec_dir / f"w{suffix}"
    if suffix == ".safetensors":
        st.save_file(module.state_dict(), str(path))
    else:
        torch.save(module.state_dict(), str(path))
    return module, path


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".pth"])
def test_file_factory_with_kwargs_and_weights(spec_dir, suffix):
    ref, path = _saved_weights(spec_dir, suffix, width=6, classes=5)
    model = load_torch_member("models/net.py:build", {"width": 6, "classes": 5}, path.name, spec_dir)
    assert not model.training and model.fc.out_features == 5
    for key, value in ref.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)


def test_absolute_file_path_dotted_callable_and_module_factory(spec_dir):
    model = load_torch_member(f"{spec_dir / 'models' / 'net.py'}:Zoo.small")
    assert model.fc.out_features == 2
    linear = load_torch_member("torch.nn:Linear", {"in_features": 4, "out_features": 2})
    assert isinstance(linear, torch.nn.Linear) and not linear.training


def test_same_file_name_in_two_folders_does_not_collide(tmp_path):
    for name, classes in (("a", 2), ("b", 7)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.py").write_text(
            f"import torch\ndef build():\n    return torch.nn.Linear(3, {classes})\n"
        )
    a = resolve_factory("a/model.py:build", tmp_path)()
    b = resolve_factory("b/model.py:build", tmp_path)()
    assert (a.out_features, b.out_features) == (2, 7)


def test_nested_checkpoint_state_dict(spec_dir):
    ref = load_torch_member("models/net.py:build", base_dir=spec_dir)
    torch.save({"epoch": 3, "state_dict": ref.state_dict()}, str(spec_dir / "ckpt.pt"))
    assert set(read_state_dict(spec_dir / "ckpt.pt")) == set(ref.state_dict())


@pytest.mark.parametrize(
    "factory, kwargs, match",
    [
        ("models/missing.py:build", {}, "file not found: .*missing.py"),
        ("models/net.py:nope", {}, "has no attribute 'nope'"),
        ("models/net.py:NOT_CALLABLE", {}, "is not callable"),
        ("models/net.py:not_a_module", {}, "must return a torch.nn.Module; it returned int"),
        ("models/net.py:build", {"depth": 3}, "does not accept kwargs"),
        ("no_such_pkg_xyz.models:build", {}, "no module named 'no_such_pkg_xyz'"),
        ("build", {}, "must look like"),
    ],
)
def test_factory_errors(spec_dir, factory, kwargs, match):
    with pytest.raises(EdgeCommitteeError, match=match):
        load_torch_member(factory, kwargs, base_dir=spec_dir)


def test_missing_weights_file(spec_dir):
    with pytest.raises(EdgeCommitteeError, match="weights file not found: .*nothing.safetensors"):
        load_torch_member("models/net.py:build", {}, "nothing.safetensors", spec_dir)


def test_key_mismatch_names_first_missing_and_unexpected_keys(spec_dir):
    ref = load_torch_member("models/net.py:build", base_dir=spec_dir)
    state = ref.state_dict()
    state["head.weight"] = state.pop("fc.weight")
    st.save_file(state, str(spec_dir / "w.safetensors"))
    with pytest.raises(EdgeCommitteeError) as err:
        load_torch_member("models/net.py:build", {}, "w.safetensors", spec_dir)
    msg = str(err.value)
    assert "1 missing key(s), first: fc.weight" in msg
    assert "1 unexpected key(s), first: head.weight" in msg


def test_shape_mismatch(spec_dir):
    _, path = _saved_weights(spec_dir, ".pt", width=4)
    with pytest.raises(EdgeCommitteeError, match="do not fit the model: size mismatch"):
        load_torch_member("models/net.py:build", {"width": 8}, path, spec_dir)


def test_pickled_model_object_is_refused_not_unpickled(spec_dir):
    torch.save(torch.nn.Linear(2, 2), str(spec_dir / "whole.pt"))
    with pytest.raises(EdgeCommitteeError, match="weights_only=True.*save model.state_dict"):
        read_state_dict(spec_dir / "whole.pt")


def test_unknown_weights_suffix(spec_dir):
    (spec_dir / "w.npz").write_bytes(b"")
    with pytest.raises(EdgeCommitteeError, match="expected .safetensors or .pt, .pth, .bin"):
        read_state_dict(spec_dir / "w.npz")
