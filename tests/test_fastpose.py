"""FastPose: the state_dict layout of AlphaPose's fast_res50_256x192.pth, checkpoint loading in
its several wrappings, and the heatmap decoding of heatmap_to_coord_simple."""

from __future__ import annotations

import pytest
import torch

from posetracker.core.errors import ModelError
from posetracker.estimators.fastpose import FastPose, coords_to_box, heatmaps_to_coords

# Facts about AlphaPose's FastPose (SE-ResNet-50 + DUC, NUM_JOINTS 17), read from its
# alphapose/models/fastpose.py, layers/SE_Resnet.py, layers/DUC.py, layers/SE_module.py:
# the ResNet-50 trunk without fc (318 keys incl. BN step counters) under 'preact.', an SE gate
# with two biased Linear layers in the first block of each of the 4 stages (16 keys), two DUC
# blocks (conv + BN: 6 keys each) and conv_out (2 keys).
EXPECTED_KEY_COUNT = 348
EXPECTED_SHAPES = {
    "preact.conv1.weight": (64, 3, 7, 7),
    "preact.bn1.running_var": (64,),
    "preact.layer1.0.conv1.weight": (64, 64, 1, 1),
    "preact.layer1.0.se.fc.0.weight": (256, 256),
    "preact.layer1.0.se.fc.2.bias": (256,),
    "preact.layer1.0.downsample.0.weight": (256, 64, 1, 1),
    "preact.layer1.0.downsample.1.running_mean": (256,),
    "preact.layer2.0.conv2.weight": (128, 128, 3, 3),
    "preact.layer3.5.bn3.weight": (1024,),
    "preact.layer4.0.se.fc.0.weight": (2048, 2048),
    "preact.layer4.2.conv3.weight": (2048, 512, 1, 1),
    "duc1.conv.weight": (1024, 512, 3, 3),
    "duc1.bn.running_var": (1024,),
    "duc2.conv.weight": (512, 256, 3, 3),
    "duc2.bn.weight": (512,),
    "conv_out.weight": (17, 128, 3, 3),
    "conv_out.bias": (17,),
}
NOT_EXPECTED = ("preact.fc.weight", "preact.layer1.1.se.fc.0.weight", "suffle1.weight",
                "duc1.conv.bias")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = FastPose()
    with torch.no_grad():  # non-trivial BN statistics so a bad load would show
        for name, t in m.state_dict().items():
            if name.endswith("running_var"):
                t.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                t.normal_(0, 0.1)
    return m.eval()


def test_state_dict_layout_matches_alphapose(model):
    state = model.state_dict()
    assert len(state) == EXPECTED_KEY_COUNT
    for key, shape in EXPECTED_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    for key in NOT_EXPECTED:
        assert key not in state
    se_blocks = sorted({k.rsplit(".se.", 1)[0] for k in state if ".se." in k})
    assert se_blocks == [f"preact.layer{i}.0" for i in range(1, 5)]


def test_output_shape(model):
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 256, 192))
    assert out.shape == (1, 17, 64, 48)


def test_checkpoint_round_trip(model, tmp_path):
    path = tmp_path / "fast_res50_256x192.pth"
    torch.save(model.state_dict(), path)
    loaded = FastPose.from_checkpoint(path)
    assert not loaded.training
    x = torch.randn(1, 3, 64, 64)  # fully convolutional: a small input keeps the test fast
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_safetensors_and_wrapped_checkpoints(model, tmp_path):
    """A DataParallel-prefixed state_dict inside {'state_dict': ...} without BN step counters,
    and a .safetensors copy, load to the same tensors."""
    from safetensors.torch import save_file

    state = model.state_dict()
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()
                                           if "num_batches_tracked" not in k}}, wrapped)
    st = tmp_path / "fastpose.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(st))
    for path in (wrapped, st):
        loaded = FastPose.from_checkpoint(path).state_dict()
        assert loaded.keys() == state.keys()
        for k, v in state.items():
            if "num_batches_tracked" not in k:
                assert torch.equal(loaded[k], v), (path.name, k)


@pytest.mark.parametrize("wrap", ["raw", "state_dict", "model", "module"])
def test_checkpoint_wrappings_unwrap(tmp_path, wrap):
    from posetracker.estimators.fastpose import _read_state

    state = {"conv_out.weight": torch.ones(2, 1), "duc1.bn.bias": torch.zeros(3)}
    obj = {"raw": state, "state_dict": {"state_dict": state, "epoch": 1},
           "model": {"model": state}, "module": {f"module.{k}": v for k, v in state.items()}}[wrap]
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path)
    got = _read_state(path, "cpu")
    assert got.keys() == state.keys()


def test_bad_checkpoints_are_clear_errors(model, tmp_path):
    state = model.state_dict()
    p = tmp_path / "partial.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith(("duc2.", "preact."))}, p)
    with pytest.raises(ModelError, match=r"missing keys 286 \(e.g. duc2.bn.bias"):
        FastPose.from_checkpoint(p)
    p2 = tmp_path / "extra.pth"
    small = {k: v for k, v in state.items() if k.startswith("conv_out")}
    torch.save({**small, "preact.fc.weight": torch.zeros(10, 20)}, p2)
    with pytest.raises(ModelError, match="unexpected keys 1 .*preact.fc.weight"):
        FastPose.from_checkpoint(p2)
    p3 = tmp_path / "other.pth"
    torch.save({"backbone.weight": torch.zeros(3)}, p3)
    with pytest.raises(ModelError, match="not a FastPose checkpoint"):
        FastPose.from_checkpoint(p3)
    p4 = tmp_path / "garbage.pth"
    p4.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read checkpoint"):
        FastPose.from_checkpoint(p4)
    with pytest.raises(ModelError, match="not found"):
        FastPose.from_checkpoint(tmp_path / "missing.pth")


def test_decode_quarter_offset():
    hm = torch.zeros(1, 4, 10, 8)
    hm[0, 0, 5, 4] = 1.0
    hm[0, 0, 5, 5] = 0.5          # right neighbour higher -> x + 0.25
    hm[0, 0, 4, 4] = 0.3          # upper neighbour higher -> y - 0.25
    hm[0, 1, 3, 3] = 2.0          # symmetric neighbours -> no shift
    hm[0, 2, 1, 4] = 1.0          # y = 1 is not inside (1 < y required) -> no shift
    hm[0, 2, 1, 5] = 0.9
    hm[0, 2, 2, 4] = 0.9
    hm[0, 3] = -1.0               # score <= 0 -> (0, 0)
    hm[0, 3, 6, 6] = -0.5
    coords, scores = heatmaps_to_coords(hm)
    torch.testing.assert_close(coords[0], torch.tensor(
        [[4.25, 4.75], [3.0, 3.0], [4.0, 1.0], [0.0, 0.0]]))
    torch.testing.assert_close(scores[0], torch.tensor([1.0, 2.0, 1.0, -0.5]))


def test_decode_batched_matches_single():
    torch.manual_seed(1)
    hm = torch.rand(5, 17, 64, 48)
    coords, scores = heatmaps_to_coords(hm)
    for i in range(5):
        c, s = heatmaps_to_coords(hm[i:i + 1])
        assert torch.equal(c[0], coords[i]) and torch.equal(s[0], scores[i])
    # x stays within the map and every coordinate is on the quarter grid.
    assert torch.all((coords * 4) == torch.round(coords * 4))
    assert coords[..., 0].max() <= 47 and coords[..., 1].max() <= 63


def test_coords_to_box():
    coords = torch.tensor([[[0.0, 0.0], [48.0, 64.0], [24.0, 32.0]]])
    boxes = torch.tensor([[100.0, 50.0, 196.0, 178.0]])
    out = coords_to_box(coords, boxes, (64, 48))
    torch.testing.assert_close(out[0], torch.tensor([[100.0, 50.0], [196.0, 178.0],
                                                     [148.0, 114.0]]))
