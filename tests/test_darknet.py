"""Darknet reader: cfg parsing, the yolov3-spp structure, .weights round trip, Darknet maxpool
padding, YOLO decoding, and the real Yolo-Fastest models finding people on a COCO image."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from posetracker.core.errors import ModelError
from posetracker.estimators.runtimes.darknet import (
    DarknetYolo,
    LetterboxTransform,
    YoloLayer,
    decode_yolo,
    load_darknet_weights,
    parse_cfg,
    postprocess,
    preprocess,
    write_darknet_weights,
)

# A miniature of AlphaPose's yolov3-spp.cfg: its residual stem, the SPP block (three stride-1
# maxpools 5/9/13 joined by route -1,-3,-5,-6), two YOLO heads (route -4 + upsample + route to
# an earlier layer), plus the Yolo-Fastest extras (depthwise groups, dropout, route groups,
# stride-1 size-2 maxpool, a conv without batch-norm).
SPP_CFG = """
[net]
width=64
height=64
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=8
size=1
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[shortcut]
from=-3
activation=linear

[convolutional]
batch_normalize=1
groups=16
filters=16
size=3
stride=2
pad=1
activation=relu6

[dropout]
probability=.2

[route]
layers=-1
groups=2
group_id=1

[maxpool]
size=2
stride=1

[convolutional]
batch_normalize=1
filters=32
size=3
stride=2
pad=1
activation=leaky

### SPP ###
[maxpool]
stride=1
size=5

[route]
layers=-2

[maxpool]
stride=1
size=9

[route]
layers=-4

[maxpool]
stride=1
size=13

[route]
layers=-1,-3,-5,-6
### End SPP ###

[convolutional]
batch_normalize=1
filters=16
size=1
stride=1
pad=1
activation=leaky

[convolutional]
size=1
stride=1
pad=1
filters=18
activation=linear

[yolo]
mask = 3,4,5
anchors = 10,13,  16,30,  33,23,  30,61,  62,45,  59,119
classes=1
num=6
scale_x_y = 1.05

[route]
layers = -4

[upsample]
stride=2

[route]
layers = -1, 8

[convolutional]
size=1
stride=1
pad=1
filters=18
activation=linear

[yolo]
mask = 0,1,2
anchors = 10,13,  16,30,  33,23,  30,61,  62,45,  59,119
classes=1
num=6
"""


def _randomise(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                v = torch.rand(t.shape, generator=g) * 0.5 + 0.5 if "running_var" in name \
                    else torch.randn(t.shape, generator=g) * 0.3
                t.copy_(v)


@pytest.fixture()
def spp_cfg(tmp_path):
    p = tmp_path / "mini-yolov3-spp.cfg"
    p.write_text(SPP_CFG)
    return p


def test_spp_structure_builds(spp_cfg):
    model = DarknetYolo.from_cfg(spp_cfg).eval()
    assert model.input_size == (64, 64)
    assert len(model.layers) == 24 and model.yolo_indices == (18, 23)
    heads = model(torch.rand(2, 3, 64, 64))
    # 64 -> /2 (layer 1) -> /2 (depthwise) -> /2 (layer 9) = 8; second head upsampled to 16.
    assert [tuple(h.shape) for h in heads] == [(2, 18, 8, 8), (2, 18, 16, 16)]
    # SPP route concatenates 4 x 32 channels.
    assert model._specs[15].out_channels == 128
    # route with groups=2, group_id=1 keeps the second half of the depthwise output.
    assert model._specs[7].out_channels == 8


def test_weights_round_trip_is_exact(spp_cfg, tmp_path):
    src = DarknetYolo.from_cfg(spp_cfg).eval()
    _randomise(src)
    path = tmp_path / "mini.weights"
    write_darknet_weights(src, path, version=(0, 2, 5), seen=123456789012)
    assert path.stat().st_size == 20 + 4 * src.num_weight_floats()
    dst = DarknetYolo.from_cfg(spp_cfg).eval()
    assert load_darknet_weights(dst, path) == (0, 2, 5, 123456789012)
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k
    x = torch.rand(1, 3, 64, 64)
    for a, b in zip(src(x), dst(x)):
        assert torch.equal(a, b)


def test_old_header_has_int32_seen(spp_cfg, tmp_path):
    src = DarknetYolo.from_cfg(spp_cfg).eval()
    _randomise(src, 1)
    path = tmp_path / "old.weights"
    write_darknet_weights(src, path, version=(0, 1, 0), seen=7)
    assert path.stat().st_size == 16 + 4 * src.num_weight_floats()
    dst = DarknetYolo.from_cfg(spp_cfg)
    assert load_darknet_weights(dst, path)[3] == 7
    assert torch.equal(dst.layers[0].conv.weight, src.layers[0].conv.weight)


def test_weights_order_bn_then_kernel(spp_cfg, tmp_path):
    """Byte layout of the first layer: bn bias, bn weight, mean, var, then the kernel."""
    model = DarknetYolo.from_cfg(spp_cfg)
    n = model.num_weight_floats()
    floats = np.arange(n, dtype="<f4")
    path = tmp_path / "ramp.weights"
    path.write_bytes(np.array([0, 2, 0], "<i4").tobytes() + np.zeros(1, "<i8").tobytes()
                     + floats.tobytes())
    load_darknet_weights(model, path)
    layer0 = model.layers[0]
    assert layer0.bn.bias[0] == 0 and layer0.bn.weight[0] == 8
    assert layer0.bn.running_mean[0] == 16 and layer0.bn.running_var[0] == 24
    assert layer0.conv.weight.flatten()[0] == 32
    # A conv without batch-norm stores its bias before its kernel.
    head = model.layers[17]
    assert head.bn is None
    assert head.conv.weight.flatten()[0] == head.conv.bias[-1] + 1


def test_weight_count_mismatch_is_a_clear_error(spp_cfg, tmp_path):
    model = DarknetYolo.from_cfg(spp_cfg)
    path = tmp_path / "short.weights"
    write_darknet_weights(model, path)
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(ModelError, match="implies .* float32 values"):
        load_darknet_weights(model, path)


def test_bad_cfg_errors_name_the_line(tmp_path):
    with pytest.raises(ModelError, match="must start with a \\[net\\]"):
        parse_cfg("[convolutional]\nfilters=3\n")
    with pytest.raises(ModelError, match="x.cfg:3 \\[frobnicate\\]: unsupported"):
        DarknetYolo(parse_cfg("[net]\nwidth=32\n[frobnicate]\n", source="x.cfg"))
    with pytest.raises(ModelError, match="does not refer to an earlier layer"):
        DarknetYolo(parse_cfg("[net]\n[route]\nlayers=-1\n"))


def test_darknet_maxpool_padding():
    """size 2 stride 1 keeps the size (pad 0 before, 1 after); size 5 stride 1 pads 2 + 2."""
    from posetracker.estimators.runtimes.darknet import MaxPoolLayer

    x = torch.arange(16.0).view(1, 1, 4, 4)
    y = MaxPoolLayer(2, 1, 1)(x)
    assert y.shape == x.shape
    assert y[0, 0, 0, 0] == 5 and y[0, 0, 3, 3] == 15 and y[0, 0, 0, 3] == 7
    y5 = MaxPoolLayer(5, 1, 4)(x)
    assert y5.shape == x.shape and y5[0, 0, 0, 0] == 10
    y2 = MaxPoolLayer(2, 2, 1)(x)
    assert y2.shape == (1, 1, 2, 2) and y2.flatten().tolist() == [5, 7, 13, 15]


def test_decode_known_cell():
    """One anchor, one class, a 2x2 grid: a logit of 0 is the cell centre, exp(0) the anchor."""
    layer = YoloLayer([(20.0, 40.0)], classes=1, scale_x_y=1.0)
    raw = torch.full((1, 6, 2, 2), -20.0)
    raw[0, 0:4, 1, 0] = 0.0           # cell (y=1, x=0): centre offset 0.5, size = anchor
    raw[0, 4:6, 1, 0] = 20.0          # objectness, class ~ 1
    boxes, scores = decode_yolo(raw, layer, (64, 64))
    k = int(scores[0, :, 0].argmax())
    assert k == 2 and scores[0, k, 0] > 0.99
    torch.testing.assert_close(boxes[0, k], torch.tensor([16.0 - 10, 48.0 - 20, 16 + 10, 48 + 20]))


def test_letterbox_and_mapping_back():
    img = np.zeros((50, 100, 3), np.uint8)
    img[:, :, 0] = 255
    x, tr = preprocess(img, (64, 64))
    assert x.shape == (3, 64, 64)
    assert tr == LetterboxTransform(0.64, 0.64, 0, 16)
    assert np.allclose(x[:, 0, 0], 0.5) and np.allclose(x[:, 32, 32], [1, 0, 0])
    # A box in network pixels maps back to image pixels, clipped to the image.
    boxes = torch.tensor([[[0.0, 16.0, 32.0, 48.0], [0.0, 0.0, 64.0, 64.0]]])
    scores = torch.tensor([[[0.9], [0.8]]])
    out = postprocess([(boxes, scores)], [tr], [(50, 100)], conf=0.5, nms=0.99, class_id=0,
                      max_detections=10)[0]
    np.testing.assert_allclose(out[0], [0, 0, 50, 50, 0.9], rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(out[1], [0, 0, 100, 50, 0.8], rtol=1e-6, atol=1e-4)


def test_nms_is_per_image():
    boxes = torch.tensor([[[0.0, 0, 10, 10], [1, 1, 10, 10]], [[0.0, 0, 10, 10], [1, 1, 10, 10]]])
    scores = torch.tensor([[[0.9], [0.8]], [[0.7], [0.95]]])
    tr = LetterboxTransform(1, 1, 0, 0)
    out = postprocess([(boxes, scores)], [tr, tr], [(20, 20), (20, 20)], conf=0.1, nms=0.5,
                      class_id=0, max_detections=10)
    assert [len(o) for o in out] == [1, 1]
    assert out[0][0, 4] == pytest.approx(0.9) and out[1][0, 4] == pytest.approx(0.95)


@pytest.fixture(scope="module")
def coco_people(data_dir):
    import cv2

    root = data_dir / "coco_mini_val2017"
    ann = json.loads((root / "annotations" / "person_keypoints_val2017.json").read_text())
    image_id = 350679  # 10 people, 7 of them larger than 3000 px^2
    gt = np.array([a["bbox"] for a in ann["annotations"]
                   if a["image_id"] == image_id and a["area"] > 3000 and not a["iscrowd"]])
    gt[:, 2:] += gt[:, :2]
    bgr = cv2.imread(str(root / "val2017" / f"{image_id:012d}.jpg"))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), gt


@pytest.mark.parametrize("name", ["yolo-fastest-1.1-xl", "yolo-fastest-1.1_body"])
def test_real_yolo_fastest_finds_people(models_dir, coco_people, name):
    from torchvision.ops import box_iou

    cfg, weights = models_dir / f"{name}.cfg", models_dir / f"{name}.weights"
    model = DarknetYolo.from_files(cfg, weights)
    # The .weights size is exactly header + what the cfg implies.
    assert weights.stat().st_size == 20 + 4 * model.num_weight_floats()
    img, gt = coco_people
    # Batched: the same image twice, and a flipped copy, give consistent results.
    dets = model.detect([img, img, np.ascontiguousarray(img[:, ::-1])], conf=0.25, nms=0.45)
    np.testing.assert_allclose(dets[0], dets[1])
    for d in (dets[0],):
        assert d.shape[1] == 5 and np.all(np.diff(d[:, 4]) <= 0)
        iou = box_iou(torch.from_numpy(gt), torch.from_numpy(d[:, :4])).numpy()
        matched = (iou.max(axis=1) >= 0.5).sum()
        assert matched >= 6, (name, iou.max(axis=1))      # 6 of the 7 not-tiny people
        assert len(d) <= 15
    flipped = dets[2].copy()
    flipped[:, [0, 2]] = img.shape[1] - flipped[:, [2, 0]]
    iou = box_iou(torch.from_numpy(gt), torch.from_numpy(flipped[:, :4])).numpy()
    assert (iou.max(axis=1) >= 0.5).sum() >= 6


def test_real_weights_with_wrong_cfg_is_refused(models_dir):
    model = DarknetYolo.from_cfg(models_dir / "yolo-fastest-1.1_body.cfg")
    with pytest.raises(ModelError, match="do not belong to this cfg"):
        load_darknet_weights(model, models_dir / "yolo-fastest-1.1-xl.weights")
