"""Channel shuffles folded into the weights (``estimators/runtimes/channel_order.py``): the real
TinyPose exports and small built graphs give the same outputs folded as intact, the product runs
the folded graph, and a graph the pass cannot fold without a gather is left alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import load_tool, require_test_extra

from posetracker.estimators.runtimes.channel_order import fold_channel_shuffles
from posetracker.estimators.runtimes.native import NativeGraph

ov = require_test_extra("openvino")
golden = load_tool("openvino_golden")


def _run(model, x: np.ndarray) -> list[np.ndarray]:
    """``model`` (left unchanged) reshaped to ``x``'s batch, compiled float32, on ``x``."""
    model = model.clone()
    tail = [d.get_length() for d in model.inputs[0].get_partial_shape()[1:]]
    model.reshape({model.inputs[0]: ov.PartialShape([len(x), *tail])})
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return [np.asarray(v) for v in compiled(x).values()]


def _kinds(model) -> set[str]:
    return {n.get_type_name() for n in model.get_ordered_ops()}


@pytest.mark.parametrize("name,size", [("tinypose-256x192", (256, 192)),
                                       ("tinypose-128x96", (128, 96))])
def test_real_tinypose_folds_to_the_same_heatmaps(models_dir, data_dir, name, size):
    model = ov.Core().read_model(str(models_dir / f"{name}.xml"))
    folded, n = fold_channel_shuffles(model)
    assert n == 49 and "Transpose" not in _kinds(folded)
    assert "Transpose" in _kinds(model)  # the caller's model is left as it was
    assert [o.get_any_name() for o in folded.outputs] == [o.get_any_name() for o in model.outputs]
    root = data_dir / "coco_mini_val2017"
    crops = golden.coco_person_crops(root / "annotations" / "person_keypoints_val2017.json",
                                     root / "val2017", size, 3)
    (heat, peak), (heat2, peak2) = _run(model, crops), _run(folded, crops)
    # only the convolutions' sums over input channels run in another order
    assert np.abs(heat - heat2).max() <= 1e-5 * max(1.0, np.abs(heat).max())
    np.testing.assert_array_equal(peak, peak2)


def test_the_product_runs_tinypose_folded(models_dir):
    graph = NativeGraph("openvino", models_dir / "tinypose-256x192.xml", precision="fp32",
                        threads=1)
    assert graph._runner.shuffles_folded == 49
    assert "Transpose" not in _kinds(graph._runner._model)


def _out(node):
    """A node's first output (helpers take and give outputs)."""
    return node if isinstance(node, ov.Output) else node.output(0)


def _shuffle(ops, x, groups: int):
    """A ShuffleNet channel shuffle as the exports write it: Reshape, Transpose, Reshape."""
    x = _out(x)
    c, h, w = (x.get_partial_shape()[i].get_length() for i in (1, 2, 3))
    five = ops.reshape(x, ops.constant(np.array([-1, groups, c // groups, h, w], np.int64)), False)
    t = ops.transpose(five, ops.constant(np.array([0, 2, 1, 3, 4], np.int64)))
    return _out(ops.reshape(t, ops.constant(np.array([-1, c, h, w], np.int64)), False))


def _conv(ops, x, out: int, rng, kernel: int = 1):
    x = _out(x)
    c = x.get_partial_shape()[1].get_length()
    w = rng.standard_normal((out, c, kernel, kernel)).astype(np.float32)
    pad = [kernel // 2] * 2
    y = ops.convolution(x, ops.constant(w), [1, 1], pad, pad, [1, 1])
    return _out(ops.add(y, ops.constant(rng.standard_normal((1, out, 1, 1)).astype(np.float32))))


def _block(ops, x, rng):
    """Split, a branch on the second half (1x1 conv, depthwise 3x3, 1x1 conv), concat, shuffle."""
    x = _out(x)
    half = x.get_partial_shape()[1].get_length() // 2
    a, b = ops.split(x, ops.constant(np.int64(1)), 2).outputs()
    y = ops.relu(_conv(ops, b, half, rng))
    dw = rng.standard_normal((half, 1, 1, 3, 3)).astype(np.float32)
    y = ops.group_convolution(y, ops.constant(dw), [1, 1], [1, 1], [1, 1], [1, 1])
    y = ops.relu(_conv(ops, y, half, rng))
    return _shuffle(ops, ops.concat([a, y], 1), 2)


def test_a_built_module_folds_exactly():
    """Two blocks, then an HRNet-style fuse: the shuffled tensor plus a resized convolution of a
    second branch (re-emitted in the shuffled order), ReLU, and a head convolution."""
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    x = ops.parameter([1, 3, 16, 12], np.float32)
    stem = ops.relu(_conv(ops, x, 20, rng, 3))
    s = _block(ops, _block(ops, stem, rng), rng)
    low = ops.max_pool(stem, [2, 2], [1, 1], [0, 0], [0, 0], [2, 2]).output(0)
    up = ops.interpolate(_conv(ops, low, 20, rng), ops.constant(np.array([16, 12], np.int64)),
                         "nearest", "sizes", axes=ops.constant(np.array([2, 3], np.int64)))
    fused = ops.relu(ops.add(ops.add(s, s), up))
    model = ov.Model([_conv(ops, fused, 5, rng)], [x])
    folded, n = fold_channel_shuffles(model)
    assert n == 2 and "Transpose" not in _kinds(folded)
    inputs = rng.standard_normal((2, 3, 16, 12)).astype(np.float32)
    (want,), (got,) = _run(model, inputs), _run(folded, inputs)
    assert np.abs(want - got).max() <= 1e-4 * np.abs(want).max()
    # without the fold the product would run the shuffles: the test sees that they are gone
    assert "Transpose" in _kinds(model)


def test_a_shuffled_tensor_needed_in_order_is_left_alone():
    """An output that is itself a shuffled tensor would need a gather: no fold."""
    import openvino.opset13 as ops

    rng = np.random.default_rng(1)
    x = ops.parameter([1, 8, 4, 4], np.float32)
    model = ov.Model([_block(ops, _conv(ops, x, 8, rng), rng)], [x])
    assert fold_channel_shuffles(model) is None
    no_shuffle = ov.Model([ops.relu(_conv(ops, x, 8, rng))], [x])
    assert fold_channel_shuffles(no_shuffle) is None


def test_the_folded_graph_keeps_its_batch_free(models_dir):
    """Constants are folded with a free batch, so the product's fixed batches still compile."""
    model = ov.Core().read_model(str(models_dir / "tinypose-128x96.xml"))
    folded, _ = fold_channel_shuffles(model)
    assert folded.inputs[0].get_partial_shape()[0].is_dynamic
    graph = NativeGraph("openvino", models_dir / "tinypose-128x96.xml", precision="fp32",
                        threads=1)
    out = graph(torch.zeros(5, 3, 128, 96))
    assert out["conv2d_441.tmp_1"].shape == (5, 17, 32, 24)


def test_a_real_graph_without_shuffles_is_left_alone(models_dir):
    """PicoDet's export has no Reshape-Transpose-Reshape shuffle: nothing to fold."""
    model = ov.Core().read_model(str(models_dir / "picodet-s-320-pedestrian.xml"))
    assert fold_channel_shuffles(model) is None
