"""TF.js graph importer: weight reading, op semantics (the known traps), golden outputs vs TF.js."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from posetracker.core.errors import ModelError
from posetracker.estimators.movenet import square_crop
from posetracker.estimators.runtimes.tfjs import (
    TfjsGraph,
    load_tfjs_graph,
    read_tfjs_topology,
    read_tfjs_weights,
    resize_bilinear_nchw,
)

GOLDEN = Path(__file__).parent / "golden" / "tfjs_golden.npz"


# ---------------------------------------------------------------------------------------------
# Tiny hand-made graphs
# ---------------------------------------------------------------------------------------------

def _ints(values):
    return {"list": {"i": [str(v) for v in values]}}


def _s(text):
    return {"s": base64.b64encode(text.encode()).decode()}


def _graph(nodes, weights, inputs=("x",), outputs=("y",)):
    """A TfjsGraph from GraphDef-like node tuples (name, op, inputs, attr) and constants."""
    raw = [{"name": n, "op": "Placeholder", "attr": {}} for n in inputs]
    raw += [{"name": k, "op": "Const", "attr": {}} for k in weights]
    raw += [{"name": n, "op": op, "input": list(ins), "attr": attr} for n, op, ins, attr in nodes]
    topology = {"node": raw, "signature": {"inputs": {f"{i}:0": {} for i in inputs},
                                           "outputs": {f"{o}:0": {} for o in outputs}}}
    return TfjsGraph(topology, weights)


def _tf_conv_reference(x, w, stride, pads, depthwise=False):
    """NHWC convolution with explicit (top, bottom, left, right) padding, plain numpy loops."""
    n, h, wd, c = x.shape
    top, bottom, left, right = pads
    xp = np.zeros((n, h + top + bottom, wd + left + right, c), x.dtype)
    xp[:, top:top + h, left:left + wd] = x
    kh, kw = w.shape[:2]
    oh, ow = (xp.shape[1] - kh) // stride + 1, (xp.shape[2] - kw) // stride + 1
    cout = c * w.shape[3] if depthwise else w.shape[3]
    y = np.zeros((n, oh, ow, cout), np.float64)
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * stride:i * stride + kh, j * stride:j * stride + kw]  # (n, kh, kw, c)
            if depthwise:
                y[:, i, j] = np.einsum("nabc,abcm->ncm", patch, w).reshape(n, -1)
            else:
                y[:, i, j] = np.einsum("nabc,abco->no", patch, w)
    return y


@pytest.mark.parametrize("op", ["Conv2D", "DepthwiseConv2dNative"])
@pytest.mark.parametrize("size", [8, 7])
def test_same_padding_stride2_is_asymmetric(op, size):
    """TF SAME, stride 2, 3x3 on an even size pads (0 before, 1 after); symmetric (1, 1) differs."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, size, size, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 4 if op == "Conv2D" else 2)).astype(np.float32)
    g = _graph([("y", op, ["x", "w"], {"strides": _ints([1, 2, 2, 1]), "padding": _s("SAME"),
                                        "dilations": _ints([1, 1, 1, 1]), "data_format": _s("NHWC")})], {"w": w})
    y = g(torch.from_numpy(x)).numpy()
    total = max((-(-size // 2) - 1) * 2 + 3 - size, 0)
    tf_pads = (total // 2, total - total // 2) * 2
    assert tf_pads == ((0, 1, 0, 1) if size % 2 == 0 else (1, 1, 1, 1))
    ref = _tf_conv_reference(x, w, 2, tf_pads, depthwise=op != "Conv2D")
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    if size % 2 == 0:  # the trap: torch-style symmetric padding gives a shifted result
        sym = _tf_conv_reference(x, w, 2, (1, 1, 1, 1), depthwise=op != "Conv2D")
        assert np.abs(sym - y).max() > 0.5


@pytest.mark.parametrize("op", ["Conv2D", "DepthwiseConv2dNative"])
@pytest.mark.parametrize("pads", [(0, 1, 2, 0), (2, 0, 0, 1), (1, 1, 0, 2)])
def test_explicit_asymmetric_padding(op, pads):
    """EXPLICIT (top, bottom, left, right) paddings, more before or after (depthwise convs fold
    them into zero kernel taps instead of padding the input)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 9, 8, 4)).astype(np.float32)
    w = rng.standard_normal((3, 3, 4, 3 if op == "Conv2D" else 2)).astype(np.float32)
    top, bottom, left, right = pads
    attr = {"strides": _ints([1, 2, 2, 1]), "padding": _s("EXPLICIT"), "dilations": _ints([1, 1, 1, 1]),
            "explicit_paddings": _ints([0, 0, top, bottom, left, right, 0, 0])}
    g = _graph([("y", op, ["x", "w"], attr)], {"w": w})
    ref = _tf_conv_reference(x, w, 2, pads, depthwise=op != "Conv2D")
    np.testing.assert_allclose(g(torch.from_numpy(x)).numpy(), ref, rtol=1e-4, atol=1e-4)


def test_cpu_batches_run_in_slices_with_the_same_results(monkeypatch):
    """A conv/elementwise plan runs a CPU batch in slices (small activations); results are the
    whole batch's. A plan with a reshape (may mix images) always runs whole."""
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.standard_normal((5, 8, 8, 3)).astype(np.float32))
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    d = rng.standard_normal((3, 3, 4, 1)).astype(np.float32)
    conv = {"strides": _ints([1, 1, 1, 1]), "padding": _s("SAME"), "dilations": _ints([1, 1, 1, 1])}
    nodes = [("c", "Conv2D", ["x", "w"], conv), ("m", "Mul", ["c", "k"], {}),
             ("y", "DepthwiseConv2dNative", ["m", "d"], {**conv, "strides": _ints([1, 2, 2, 1])}),
             ("r", "Reshape", ["y", "shape"], {})]
    consts = {"w": w, "d": d, "k": np.float32([1, 2, 3, 4]).reshape(1, 1, 1, 4), "shape": np.int32([-1, 64])}
    monkeypatch.setattr(TfjsGraph, "_CPU_SLICE_BYTES", 2 * 8 * 8 * 4 * 4)  # two images per slice
    first = _graph(nodes, consts, outputs=("y", "r")).run({"x": x}, ["y"])["y"]  # learns its peak on image 0
    g = _graph(nodes, consts, outputs=("y", "r"))
    whole = {name: g.run({"x": x[i:i + 1]}, ["y"])["y"] for i, name in enumerate("abcde")}
    np.testing.assert_array_equal(first.numpy(), torch.cat(list(whole.values())).numpy())
    assert g._batch_of((("x",), ("y",)), {"x": x}) == 5
    assert g._batch_of((("x",), ("r",)), {"x": x}) is None
    y = g.run({"x": x}, ["y"])["y"]
    assert g._chunk_size((("x",), ("y",))) == 2
    np.testing.assert_array_equal(y.numpy(), torch.cat(list(whole.values())).numpy())
    r = g.run({"x": x}, ["r"])["r"]
    np.testing.assert_allclose(r.numpy(), y.reshape(-1, 64).numpy(), atol=1e-6)


def test_fused_conv_bias_relu6_and_fusion_of_plain_ops():
    """_FusedConv2D(BiasAdd, Relu6) equals Conv2D -> BiasAdd -> Relu6 (the latter gets fused too)."""
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.standard_normal((1, 6, 6, 3)).astype(np.float32) * 3)
    w = rng.standard_normal((3, 3, 3, 5)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    conv = {"strides": _ints([1, 1, 1, 1]), "padding": _s("SAME"), "dilations": _ints([1, 1, 1, 1])}
    fused = _graph([("y", "_FusedConv2D", ["x", "w", "b"],
                     {**conv, "fused_ops": {"list": {"s": [_s("BiasAdd")["s"], _s("Relu6")["s"]]}}})],
                   {"w": w, "b": b})
    plain = _graph([("c", "Conv2D", ["x", "w"], conv), ("a", "BiasAdd", ["c", "b"], {}),
                    ("y", "Relu6", ["a"], {})], {"w": w, "b": b})
    assert plain.node_names == ["x", "y"]  # conv, bias and activation became one op
    ref = np.clip(_tf_conv_reference(x.numpy(), w, 1, (1, 1, 1, 1)) + b, 0, 6)
    np.testing.assert_allclose(fused(x).numpy(), ref, atol=1e-4)
    np.testing.assert_allclose(plain(x).numpy(), ref, atol=1e-4)
    with pytest.raises(ModelError, match="fuse=False"):
        plain.run({"x": x}, ["c"])
    # A scalar Add after a conv is not a bias: it stays a separate op and broadcasts as in TF.
    scalar = _graph([("c", "Conv2D", ["x", "w"], conv), ("y", "AddV2", ["c", "k"], {})],
                    {"w": w, "k": np.array([0.5], np.float32)})
    assert scalar.node_names == ["x", "c", "y"]
    np.testing.assert_allclose(scalar(x).numpy(), _tf_conv_reference(x.numpy(), w, 1, (1, 1, 1, 1)) + 0.5, atol=1e-4)


def _tf_resize_reference(img, out_h, out_w, align_corners, half_pixel):
    """TensorFlow's ResizeBilinear on (H, W) written from its definition."""
    in_h, in_w = img.shape

    def source(dst, n_in, n_out):
        if align_corners and n_out > 1:
            return dst * (n_in - 1) / (n_out - 1)
        scale = n_in / n_out
        return (dst + 0.5) * scale - 0.5 if half_pixel else dst * scale

    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        sy = source(i, in_h, out_h)
        y0 = int(np.floor(sy))
        fy = sy - y0
        ya, yb = min(max(y0, 0), in_h - 1), min(max(y0 + 1, 0), in_h - 1)
        for j in range(out_w):
            sx = source(j, in_w, out_w)
            x0 = int(np.floor(sx))
            fx = sx - x0
            xa, xb = min(max(x0, 0), in_w - 1), min(max(x0 + 1, 0), in_w - 1)
            top = img[ya, xa] + (img[ya, xb] - img[ya, xa]) * fx
            bot = img[yb, xa] + (img[yb, xb] - img[yb, xa]) * fx
            out[i, j] = top + (bot - top) * fy
    return out


@pytest.mark.parametrize("align_corners,half_pixel", [(False, True), (True, False), (False, False)])
@pytest.mark.parametrize("size", [(8, 8), (5, 7), (3, 2)])
def test_resize_bilinear_modes(align_corners, half_pixel, size):
    img = np.random.default_rng(2).standard_normal((4, 6))
    got = resize_bilinear_nchw(torch.from_numpy(img)[None, None], size, align_corners=align_corners,
                               half_pixel_centers=half_pixel)[0, 0].numpy()
    np.testing.assert_allclose(got, _tf_resize_reference(img, *size, align_corners, half_pixel), atol=1e-6)
    if half_pixel:  # the documented equivalence
        ref = F.interpolate(torch.from_numpy(img)[None, None], size=size, mode="bilinear", align_corners=False)
        np.testing.assert_allclose(got, ref[0, 0].numpy(), atol=1e-12)


def test_layout_ops_on_permuted_values():
    """Ops after a conv (stored NCHW) see NHWC values: concat/mean/pad/split/transpose/reshape axes."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 5, 3)).astype(np.float32)
    w = np.zeros((1, 1, 3, 3), np.float32)
    w[0, 0] = np.eye(3)  # identity 1x1 conv: its output is x, stored NCHW
    conv = {"strides": _ints([1, 1, 1, 1]), "padding": _s("VALID")}
    consts = {"w": w, "axis": np.array(3, np.int32), "axes": np.array([1, 2], np.int32),
              "pads": np.array([[0, 0], [1, 0], [0, 2], [0, 1]], np.int32),
              "perm": np.array([0, 3, 1, 2], np.int32), "shape": np.array([2, -1], np.int32),
              "sizes": np.array([1, 2], np.int32), "sdim": np.array(-1, np.int32),
              "scale": np.array([1.0, 2.0, 3.0], np.float32)}
    nodes = [("c", "Conv2D", ["x", "w"], conv),
             ("cat", "ConcatV2", ["c", "c", "axis"], {}),
             ("mean", "Mean", ["c", "axes"], {"keep_dims": {"b": True}}),
             ("pad", "Pad", ["c", "pads"], {}),
             ("tr", "Transpose", ["c", "perm"], {}),
             ("rs", "Reshape", ["tr", "shape"], {}),
             ("sp", "SplitV", ["c", "sizes", "sdim"], {"num_split": {"i": "2"}}),
             ("mul", "Mul", ["c", "scale"], {})]
    g = _graph(nodes, consts, outputs=("cat", "mean", "pad", "rs", "sp:1", "mul"))
    out = g.run({"x": torch.from_numpy(x)}, ["cat", "mean", "pad", "rs", "sp:1", "mul"])
    np.testing.assert_allclose(out["cat"].numpy(), np.concatenate([x, x], axis=3), atol=1e-6)
    np.testing.assert_allclose(out["mean"].numpy(), x.mean(axis=(1, 2), keepdims=True), atol=1e-6)
    np.testing.assert_allclose(out["pad"].numpy(), np.pad(x, consts["pads"]), atol=1e-6)
    np.testing.assert_allclose(out["rs"].numpy(), x.transpose(0, 3, 1, 2).reshape(2, -1), atol=1e-6)
    np.testing.assert_allclose(out["sp:1"].numpy(), x[..., 1:], atol=1e-6)
    np.testing.assert_allclose(out["mul"].numpy(), x * consts["scale"], atol=1e-6)
    nchw = g.run({"x": torch.from_numpy(x).permute(0, 3, 1, 2)}, ["mul"], channels_first=True)["mul"]
    np.testing.assert_allclose(nchw.numpy(), (x * consts["scale"]).transpose(0, 3, 1, 2), atol=1e-6)


def test_post_processing_ops():
    """StridedSlice masks, GatherNd, GatherV2, ArgMax, FloorDiv/FloorMod, TopKV2, Pack/Unpack."""
    x = np.arange(2 * 5 * 4, dtype=np.float32).reshape(2, 5, 4) * np.float32(-1.5) + 7
    consts = {"b": np.array([0, 4, 1], np.int32), "e": np.array([0, 0, 4], np.int32),
              "s": np.array([1, -2, 1], np.int32), "idx": np.array([[1, 2], [0, 4]], np.int32),
              "gi": np.array([3, 0, 3], np.int32), "ax1": np.array(1, np.int32),
              "k": np.array(3, np.int32), "d": np.array(3, np.int32)}
    nodes = [("ss", "StridedSlice", ["x", "b", "e", "s"],
              {"begin_mask": {"i": "1"}, "end_mask": {"i": "7"}, "shrink_axis_mask": {"i": "0"}}),
             ("ss2", "StridedSlice", ["x", "b", "e", "s"], {"shrink_axis_mask": {"i": "1"}, "end_mask": {"i": "6"}}),
             ("gnd", "GatherNd", ["x", "idx"], {}),
             ("gv2", "GatherV2", ["x", "gi", "ax1"], {}),
             ("am", "ArgMax", ["x", "ax1"], {"output_type": {"type": "DT_INT32"}}),
             ("fd", "FloorDiv", ["am", "d"], {}), ("fm", "FloorMod", ["am", "d"], {}),
             ("tk", "TopKV2", ["x", "k"], {}),
             ("up", "Unpack", ["x"], {"num": {"i": "2"}, "axis": {"i": "0"}}),
             ("pk", "Pack", ["up:1", "up"], {"axis": {"i": "1"}})]
    names = ["ss", "ss2", "gnd", "gv2", "am", "fd", "fm", "tk", "tk:1", "pk"]
    out = {k: v.numpy() for k, v in _graph(nodes, consts, outputs=names).run({"x": torch.from_numpy(x)}, names).items()}
    np.testing.assert_array_equal(out["ss"], x[:, 4::-2, 1:])
    np.testing.assert_array_equal(out["ss2"], x[0, 4::-2, 1:])
    np.testing.assert_array_equal(out["gnd"], x[[1, 0], [2, 4]])
    np.testing.assert_array_equal(out["gv2"], x[:, [3, 0, 3]])
    am = x.argmax(axis=1)
    np.testing.assert_array_equal(out["am"], am)
    np.testing.assert_array_equal(out["fd"], am // 3)
    np.testing.assert_array_equal(out["fm"], am % 3)
    order = np.argsort(-x, axis=-1, kind="stable")[..., :3]
    np.testing.assert_array_equal(out["tk:1"], order)
    np.testing.assert_array_equal(out["tk"], np.take_along_axis(x, order, -1))
    np.testing.assert_array_equal(out["pk"], np.stack([x[1], x[0]], axis=1))


def test_unsupported_op_is_a_model_error():
    with pytest.raises(ModelError, match="'FancyOp' is not supported"):
        _graph([("y", "FancyOp", ["x"], {})], {})


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------

def test_read_weights_float16_and_int32(models_dir):
    path = models_dir / "movenet-lightning.json"
    weights = read_tfjs_weights(path)
    doc = json.loads(path.read_text())
    specs = doc["weightsManifest"][0]["weights"]
    assert list(weights) == [s["name"] for s in specs]
    raw = (models_dir / "movenet-lightning.bin").read_bytes()
    offset = 0
    for spec in specs:  # recompute each tensor's bytes independently of the reader
        n = int(np.prod(spec["shape"], dtype=np.int64))
        dtype = np.float16 if spec.get("quantization") else np.int32
        expected = np.frombuffer(raw, dtype, n, offset).astype(np.float32 if dtype == np.float16 else np.int32)
        np.testing.assert_array_equal(weights[spec["name"]].reshape(-1), expected)
        assert weights[spec["name"]].dtype == (np.float32 if dtype == np.float16 else np.int32)
        offset += n * np.dtype(dtype).itemsize
    assert offset == len(raw)
    assert int(weights["StatefulPartitionedCall/floordiv/y"]) == 48  # the 48x48 Lightning grid
    assert read_tfjs_topology(path)["signature"]["inputs"]["input:0"]["dtype"] == "DT_INT32"


def test_read_weights_uint8_affine_and_errors(tmp_path):
    q = np.array([0, 1, 255, 128], np.uint8)
    doc = {"format": "graph-model", "modelTopology": {"node": []}, "weightsManifest": [{
        "paths": ["a.bin", "b.bin"],
        "weights": [{"name": "q", "shape": [2, 2], "dtype": "float32",
                     "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
                    {"name": "i", "shape": [2], "dtype": "int32"}]}]}
    data = q.tobytes() + np.array([7, -3], "<i4").tobytes()
    (tmp_path / "a.bin").write_bytes(data[:5])  # a group may be split over several shards
    (tmp_path / "b.bin").write_bytes(data[5:])
    (tmp_path / "m.json").write_text(json.dumps(doc))
    w = read_tfjs_weights(tmp_path / "m.json")
    np.testing.assert_array_equal(w["q"], (q.astype(np.float32) * 0.5 - 1.0).reshape(2, 2))
    np.testing.assert_array_equal(w["i"], [7, -3])
    (tmp_path / "b.bin").write_bytes(data[5:-1])
    with pytest.raises(ModelError, match="truncated or corrupt"):
        read_tfjs_weights(tmp_path / "m.json")
    (tmp_path / "b.bin").unlink()
    with pytest.raises(ModelError, match="b.bin"):
        read_tfjs_weights(tmp_path / "m.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ModelError, match="not a TF.js"):
        read_tfjs_weights(tmp_path / "bad.json")


def test_weights_argument_replaces_bin(models_dir, tmp_path):
    """load_tfjs_graph(json, weights=...) needs no .bin; missing names are refused."""
    shutil.copy(models_dir / "movenet-lightning.json", tmp_path / "m.json")  # no .bin beside it
    weights = read_tfjs_weights(models_dir / "movenet-lightning.json")
    g = load_tfjs_graph(tmp_path / "m.json", {k: torch.from_numpy(v) for k, v in weights.items()})
    assert g.output_names == ["Identity"]
    del weights["StatefulPartitionedCall/add_5/y"]
    with pytest.raises(ModelError, match="lack 1 tensors"):
        load_tfjs_graph(tmp_path / "m.json", weights)


# ---------------------------------------------------------------------------------------------
# Whole graphs against TensorFlow.js (tools/make_tfjs_golden.py)
# ---------------------------------------------------------------------------------------------

def _detector_image(data_dir, golden, size):
    import cv2
    image = cv2.imread(str(data_dir / "coco_mini_val2017/val2017" / str(golden["detector.image"])))[:, :, ::-1]
    return square_crop(image, [0, 0, image.shape[1], image.shape[0]], size, scale=1.0)[0].astype(np.float32)


def test_centernet_matches_tfjs(models_dir, data_dir):
    golden = np.load(GOLDEN)
    g = load_tfjs_graph(models_dir / "centernet.json")
    x = torch.from_numpy(_detector_image(data_dir, golden, 512))[None]
    with torch.inference_mode():
        det = g.run({"tower_0/images": x}, ["tower_0/detections"])["tower_0/detections"][0, :20].numpy()
    ref = golden["centernet.detections"]  # (20, 6): x1, y1, x2, y2, score, class
    np.testing.assert_array_equal(det[:, 5], ref[:, 5])
    np.testing.assert_allclose(det[:, 4], ref[:, 4], atol=2e-4)
    np.testing.assert_allclose(det[:, :4], ref[:, :4], atol=0.05)  # pixels of the 512 input


def test_nanodet_matches_tfjs(models_dir, data_dir):
    golden = np.load(GOLDEN)
    g = load_tfjs_graph(models_dir / "nanodet.json")
    x = torch.from_numpy(_detector_image(data_dir, golden, 416) / 255.0).permute(2, 0, 1)[None]
    with torch.inference_mode():
        out = g(x)
    for name, value in zip(g.output_names, out):
        rows = golden[f"nanodet.{name}.rows"]
        np.testing.assert_allclose(value[0, rows].numpy(), golden[f"nanodet.{name}"], atol=2e-3, err_msg=name)
