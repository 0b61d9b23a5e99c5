"""OpenVINO IR reader: the real PP-TinyPose and PicoDet exports equal OpenVINO's own runtime on
real person crops and images (batch 1 and more), weights are trainable parameters, float16 runs,
the ops the exports do not use (but neighbours do) match OpenVINO on small built models, and
broken files are refused with one line."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_tool, require_test_extra

from posetracker.core.errors import InputError, ModelError
from posetracker.estimators.runtimes.openvino_ir import OpenVinoIR, load_openvino_ir

golden = load_tool("openvino_golden")


@pytest.fixture(scope="module")
def coco(data_dir):
    root = data_dir / "coco_mini_val2017"
    return root / "annotations" / "person_keypoints_val2017.json", root / "val2017"


def _crops(coco, size, n):
    ann, images = coco
    return golden.coco_person_crops(ann, images, size, n)


def _images(coco, n):
    _, images = coco
    paths = sorted(images.glob("*.jpg"))[:n]
    return golden.resized_images(paths, (320, 320))


# ---------------------------------------------------------------------------------------------
# Interface
# ---------------------------------------------------------------------------------------------

def test_interface_of_the_real_exports(models_dir):
    pose = load_openvino_ir(models_dir / "tinypose-256x192.xml")
    assert isinstance(pose, OpenVinoIR) and not pose.training
    assert pose.input_name == "image" and tuple(pose.input_shape) == (1, 3, 256, 192)
    assert pose.output_names == ["conv2d_441.tmp_1", "argmax_0.tmp_0"]
    det = load_openvino_ir(models_dir / "picodet-s-320-pedestrian.xml",
                           models_dir / "picodet-s-320-pedestrian.bin")
    assert tuple(det.input_shape) == (1, 3, 320, 320)
    assert sorted(det.output_names) == ["concat_8.tmp_0", "transpose_8.tmp_0"]

    x = torch.zeros(2, 3, 256, 192)
    with torch.inference_mode():
        both = pose(x)
        assert list(both) == pose.output_names
        n_all = len(pose._order)
        pose.select_outputs(["conv2d_441.tmp_1"])
        only = pose(x)
    assert list(only) == ["conv2d_441.tmp_1"] and len(pose._order) < n_all  # TopK path dropped
    assert torch.equal(only["conv2d_441.tmp_1"], both["conv2d_441.tmp_1"])
    assert only["conv2d_441.tmp_1"].is_contiguous()
    with pytest.raises(ValueError, match="no output"):
        pose.select_outputs(["nope"])
    with pytest.raises(InputError, match="any batch"):
        pose(torch.zeros(1, 4, 256, 192))


# ---------------------------------------------------------------------------------------------
# Golden: equal to OpenVINO's runtime on real inputs
# ---------------------------------------------------------------------------------------------

def _assert_matches_openvino(xml: Path, x: np.ndarray, rel: float = 2e-5):
    rows = golden.compare(xml, x)
    assert rows
    for name, shape, peak, diff in rows:
        assert shape[0] == x.shape[0]
        assert diff <= rel * max(1.0, peak), f"{name}: max |diff| {diff} (max |ref| {peak})"


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("name,size", [("tinypose-256x192", (256, 192)), ("tinypose-128x96", (128, 96))])
def test_tinypose_equals_openvino_on_person_crops(models_dir, coco, name, size, batch):
    require_test_extra("openvino")
    x = _crops(coco, size, batch)
    assert x.shape == (batch, 3, *size) and np.isfinite(x).all()
    _assert_matches_openvino(models_dir / f"{name}.xml", x)


@pytest.mark.parametrize("batch", [1, 3])
def test_picodet_equals_openvino_on_images(models_dir, coco, batch):
    require_test_extra("openvino")
    x = _images(coco, batch)
    _assert_matches_openvino(models_dir / "picodet-s-320-pedestrian.xml", x)


def test_golden_tool_cli(models_dir, coco, capsys):
    require_test_extra("openvino")
    ann, images = coco
    rc = golden.main([str(models_dir / "tinypose-128x96.xml"), "--coco", str(ann), "--coco-images",
                      str(images), "--batch", "2"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "conv2d_441.tmp_1" in out and "argmax_0.tmp_0" in out and "FAIL" not in out


def test_batches_are_independent(models_dir, coco):
    """Batch N gives each crop the result it gets alone (no batch-1 constant left in the graph)."""
    module = load_openvino_ir(models_dir / "tinypose-128x96.xml")
    x = torch.from_numpy(_crops(coco, (128, 96), 3))
    with torch.inference_mode():
        together = module(x)
        alone = [module(x[i:i + 1]) for i in range(3)]
    for name in module.output_names:
        expected = torch.cat([a[name] for a in alone])
        assert torch.allclose(together[name].double(), expected.double(), atol=1e-5), name


# ---------------------------------------------------------------------------------------------
# Trainable, float16
# ---------------------------------------------------------------------------------------------

def test_weights_are_parameters_and_backward_gives_finite_gradients(models_dir, coco):
    module = load_openvino_ir(models_dir / "tinypose-128x96.xml")
    params = dict(module.named_parameters())
    assert len(params) > 250 and all(p.dtype == torch.float32 for p in params.values())
    assert set(module.state_dict()) == set(params)  # every float weight is a parameter
    assert sum(p.numel() for p in params.values()) > 1_000_000  # ~1.3 M weights of the export
    x = torch.from_numpy(_crops(coco, (128, 96), 2))
    with torch.inference_mode():
        reference = module(x)["conv2d_441.tmp_1"]
    module.train()
    heat = module(x)["conv2d_441.tmp_1"]
    assert heat.requires_grad
    torch.testing.assert_close(heat.detach(), reference, atol=1e-5, rtol=1e-5)
    (heat ** 2).mean().backward()
    grads = [p.grad for p in params.values()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) > 0 for g in grads) > 0.9 * len(grads)

    # A small step against the gradient lowers the loss: the module can be fine-tuned.
    loss0 = float((heat.detach() ** 2).mean())
    norm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))
    with torch.no_grad():
        for p in params.values():
            p -= (0.05 * loss0 / norm ** 2) * p.grad
        assert float((module(x)["conv2d_441.tmp_1"] ** 2).mean()) < loss0


def test_float16_runs(models_dir, coco):
    module = load_openvino_ir(models_dir / "tinypose-128x96.xml")
    x = torch.from_numpy(_crops(coco, (128, 96), 1))
    with torch.inference_mode():
        ref = module(x)
    half = copy.deepcopy(module).half()
    try:
        with torch.inference_mode():
            out = half(x.half())
    except (RuntimeError, NotImplementedError) as e:  # a torch build without CPU float16 kernels
        pytest.skip(f"float16 on CPU not supported here: {e}")
    heat = out["conv2d_441.tmp_1"]
    assert heat.dtype == torch.float16 and out["argmax_0.tmp_0"].dtype == torch.int64
    assert (heat.float() - ref["conv2d_441.tmp_1"]).abs().max() < 2e-2
    # The original module is untouched by the copy's conversion.
    assert next(module.parameters()).dtype == torch.float32


# ---------------------------------------------------------------------------------------------
# Broken files
# ---------------------------------------------------------------------------------------------

def _copy_model(models_dir: Path, tmp_path: Path, name: str = "tinypose-128x96") -> tuple[Path, Path]:
    xml, bin_ = tmp_path / f"{name}.xml", tmp_path / f"{name}.bin"
    shutil.copy(models_dir / f"{name}.xml", xml)
    shutil.copy(models_dir / f"{name}.bin", bin_)
    return xml, bin_


def _one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text
    return text


def test_unknown_op_is_refused_naming_op_and_layer(models_dir, tmp_path):
    xml, _ = _copy_model(models_dir, tmp_path)
    text = xml.read_text()
    old = '<layer id="2479" name="argmax_0.tmp_0" type="Squeeze" version="opset1">'
    assert old in text
    xml.write_text(text.replace(old, '<layer id="2479" name="argmax_0.tmp_0" type="FancySqueeze" '
                                     'version="opset42">'))
    with pytest.raises(ModelError) as e:
        load_openvino_ir(xml)
    msg = _one_line(e)
    assert "FancySqueeze" in msg and "opset42" in msg and "argmax_0.tmp_0" in msg and "2479" in msg
    assert str(xml) in msg


def test_unsupported_attribute_is_refused(models_dir, tmp_path):
    xml, _ = _copy_model(models_dir, tmp_path)
    text = xml.read_text()
    assert text.count('coordinate_transformation_mode="align_corners"') == 3
    xml.write_text(text.replace('coordinate_transformation_mode="align_corners"',
                                'coordinate_transformation_mode="tf_half_pixel_for_nn"', 1))
    with pytest.raises(ModelError) as e:
        load_openvino_ir(xml)
    msg = _one_line(e)
    assert "tf_half_pixel_for_nn" in msg and "bilinear_interp_v2_0.tmp_0" in msg


def test_truncated_or_mismatched_weights_are_refused(models_dir, tmp_path):
    xml, bin_ = _copy_model(models_dir, tmp_path)
    data = bin_.read_bytes()
    bin_.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError) as e:
        load_openvino_ir(xml)
    msg = _one_line(e)
    assert str(bin_) in msg and "truncated" in msg

    other = tmp_path / "other.bin"
    other.write_bytes(b"\0" * 100)
    with pytest.raises(ModelError, match="truncated"):
        load_openvino_ir(xml, other)
    with pytest.raises(ModelError) as e:
        load_openvino_ir(xml, tmp_path / "missing.bin")
    assert "missing.bin" in _one_line(e) and "not found" in str(e.value)

    # A Const whose declared size does not fit its shape (corrupt .xml) is refused too.
    text = xml.read_text()
    bin_.write_bytes(data)
    xml.write_text(text.replace('shape="32, 3, 3, 3" offset="0" size="1728"',
                                'shape="32, 3, 3, 3" offset="0" size="1700"', 1))
    with pytest.raises(ModelError, match="corrupt"):
        load_openvino_ir(xml)


def test_missing_or_malformed_xml_is_refused(models_dir, tmp_path):
    with pytest.raises(ModelError) as e:
        load_openvino_ir(tmp_path / "absent.xml")
    assert "absent.xml" in _one_line(e) and "not found" in str(e.value)
    bad = tmp_path / "bad.xml"
    bad.write_text("<net name='x' version='11'><layers><layer id='0'")
    with pytest.raises(ModelError) as e:
        load_openvino_ir(bad)
    assert "bad.xml" in _one_line(e) and "malformed" in str(e.value)
    other = tmp_path / "other.xml"
    other.write_text("<html><body/></html>")
    with pytest.raises(ModelError, match="not an OpenVINO IR"):
        load_openvino_ir(other)


def test_weights_path_argument(models_dir, tmp_path):
    xml = tmp_path / "renamed.xml"
    shutil.copy(models_dir / "tinypose-128x96.xml", xml)
    with pytest.raises(ModelError, match="renamed.bin"):
        load_openvino_ir(xml)
    module = load_openvino_ir(xml, models_dir / "tinypose-128x96.bin")
    assert tuple(module.input_shape) == (1, 3, 128, 96)


# ---------------------------------------------------------------------------------------------
# Small built models: ops and attributes beyond the two exports, against OpenVINO
# ---------------------------------------------------------------------------------------------

def _save(model, path: Path) -> Path:
    import openvino as ov

    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


def _check_built(model, tmp_path: Path, x: np.ndarray, atol: float = 1e-5):
    import openvino as ov

    xml = _save(model, tmp_path / "built.xml")
    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled({0: x})
    module = load_openvino_ir(xml)
    with torch.inference_mode():
        ours = module(torch.from_numpy(x))
    assert len(ours) == len(compiled.outputs)
    for out in compiled.outputs:
        ref = np.asarray(result[out])
        got = ours[out.get_any_name()].numpy()
        assert got.shape == ref.shape, out.get_any_name()
        np.testing.assert_allclose(got, ref, atol=atol, rtol=1e-5, err_msg=out.get_any_name())
    return module


def _named(node, name: str):
    """An op's output (the first, for a node) with tensor name ``name``."""
    out = node.output(0) if hasattr(node, "output") else node
    out.get_tensor().set_names({name})
    return out


@pytest.fixture
def x4():
    return np.random.default_rng(0).normal(size=(2, 4, 9, 10)).astype(np.float32)


def test_built_convolutions(tmp_path, x4):
    require_test_extra("openvino")
    import openvino.opset8 as ops

    rng = np.random.default_rng(1)
    p = ops.parameter([2, 4, 9, 10], np.float32, name="x")
    w = ops.constant(rng.normal(size=(6, 4, 3, 3)).astype(np.float32))
    a = ops.convolution(p, w, [2, 1], [1, 0], [0, 1], [1, 2])  # asymmetric pads, dilation 2
    scale = ops.constant(rng.uniform(0.5, 2, size=(1, 6, 1, 1)).astype(np.float32))
    bias = ops.constant(rng.normal(size=(1, 6, 1, 1)).astype(np.float32))
    a = ops.clamp(ops.add(ops.multiply(a, scale), bias), -0.5, 0.7)
    same = ops.convolution(p, w, [2, 2], [0, 0], [0, 0], [1, 1], auto_pad="same_upper")
    dw = ops.group_convolution(p, ops.constant(rng.normal(size=(4, 2, 1, 3, 3)).astype(np.float32)),
                               [1, 1], [0, 0], [0, 0], [1, 1], auto_pad="same_lower")
    dw = ops.hswish(ops.add(dw, ops.constant(np.float32(0.25))))
    pw = ops.convolution(p, ops.constant(rng.normal(size=(5, 4, 1, 1)).astype(np.float32)),
                         [1, 1], [0, 0], [0, 0], [1, 1])
    pw = ops.hard_sigmoid(pw, ops.constant(np.float32(0.2)), ops.constant(np.float32(0.5)))
    outs = [_named(a, "a"), _named(same, "same"), _named(dw, "dw"), _named(pw, "pw")]
    model = __import__("openvino").Model(outs, [p])
    module = _check_built(model, tmp_path, x4)
    # Bias, scale and activations were folded into the convolutions.
    assert not any(n.layer.type in ("Add", "Multiply", "Clamp", "HSwish", "HardSigmoid")
                   for n in module._order)


def test_built_pooling_padding_and_unary_ops(tmp_path, x4):
    require_test_extra("openvino")
    import openvino as ov
    import openvino.opset1 as o1
    import openvino.opset8 as ops

    p = ops.parameter([2, 4, 9, 10], np.float32, name="x")
    outs = [
        _named(ops.max_pool(p, [2, 2], [1, 1], [1, 1], [1, 1], [3, 3], "floor"), "maxpool8"),
        _named(o1.max_pool(p, [2, 2], [0, 0], [1, 1], [3, 3], "ceil"), "maxpool_ceil"),
        _named(o1.avg_pool(p, [2, 2], [1, 1], [1, 1], [3, 3], True, "floor"), "avg_excl"),
        _named(o1.avg_pool(p, [1, 1], [1, 1], [1, 1], [3, 3], False, "floor"), "avg_incl"),
        _named(ops.pad(p, [0, 0, 1, 2], [0, 0, 2, 0], "constant", np.float32(0.5)), "pad_const"),
        _named(ops.pad(p, [0, 0, 1, 2], [0, 0, 2, 0], "edge"), "pad_edge"),
        _named(ops.pad(p, [0, 0, 1, 2], [0, 0, 2, 0], "reflect"), "pad_reflect"),
        _named(ops.swish(p, ops.constant(np.float32(1.7))), "swish"),
        _named(ops.swish(p), "swish1"),
        _named(ops.hsigmoid(p), "hsigmoid"),
        _named(ops.tanh(p), "tanh"),
        _named(ops.exp(p), "exp"),
        _named(ops.log(ops.add(ops.abs(p), ops.constant(np.float32(1)))), "log"),
        _named(ops.sqrt(ops.abs(p)), "sqrt"),
        _named(ops.power(p, ops.constant(np.float32(2))), "power"),
        _named(ops.divide(p, ops.constant(np.float32(3))), "divide"),
        _named(ops.subtract(ops.constant(np.float32(1)), p), "subtract"),
        _named(ops.maximum(p, ops.constant(np.float32(0.1))), "maximum"),
        _named(ops.elu(p, 0.5), "elu"),
    ]
    _check_built(ov.Model(outs, [p]), tmp_path, x4)


def test_built_shape_and_layout_ops(tmp_path, x4):
    require_test_extra("openvino")
    import openvino as ov
    import openvino.opset8 as ops

    p = ops.parameter([2, 4, 9, 10], np.float32, name="x")
    i64 = lambda v: ops.constant(np.array(v, np.int64))  # noqa: E731
    shape = ops.shape_of(p)
    outs = [
        # negative stride, shrink, new axis, ellipsis and masks
        _named(ops.strided_slice(p, i64([0, 3, 8]), i64([0, 0, 1]), i64([1, -1, -2]),
                                 [1, 0, 0], [1, 1, 0]), "slice_neg"),
        _named(ops.strided_slice(p, i64([0, 0, 1]), i64([0, 0, 3]), i64([1, 1, 1]), [1, 0, 0],
                                 [1, 0, 0], new_axis_mask=[0, 1, 0]), "slice_new_axis"),
        _named(ops.strided_slice(p, i64([0, 2, 0, 1]), i64([0, 3, 0, 9]), i64([1, 1, 1, 3]),
                                 [1, 0, 1, 0], [1, 0, 1, 0], shrink_axis_mask=[0, 1, 0, 0]),
               "slice_shrink"),
        _named(ops.strided_slice(p, i64([0, 2]), i64([0, 7]), i64([1, 3]), [0, 0], [0, 0],
                                 ellipsis_mask=[1, 0]), "slice_ellipsis"),
        _named(ops.gather(p, i64([3, -1, 0]), i64(1)), "gather"),
        _named(ops.broadcast(ops.reduce_mean(p, i64([1]), True), ops.shape_of(p)), "broadcast"),
        _named(ops.broadcast(ops.reduce_mean(p, i64([3]), True), i64([1, 1, 1, 10]),
                             broadcast_spec="BIDIRECTIONAL"), "broadcast_bidi"),
        _named(ops.unsqueeze(ops.squeeze(ops.reduce_max(p, i64([2]), True), i64([2])), i64([-1])),
               "squeeze"),
        _named(ops.variadic_split(p, i64(3), i64([2, -1, 3])).output(1), "vsplit"),
        _named(ops.transpose(p, i64([0, 2, 3, 1])), "transpose"),
        _named(ops.reshape(p, i64([0, -1, 5]), True), "reshape"),
        _named(ops.concat([p, ops.negative(p)], -1), "concat"),
        _named(ops.reduce_sum(p, i64([1, 3]), False), "reduce_sum"),
        _named(ops.softmax(p, -1), "softmax"),
        _named(ops.matmul(p, ops.constant(np.random.default_rng(2).normal(size=(7, 10))
                                          .astype(np.float32)), False, True), "matmul"),
        _named(ops.convert(ops.multiply(ops.convert(shape, "f32"), ops.constant(np.float32(1.5))),
                           "i64"), "shape_math"),
        _named(ops.range(ops.constant(np.float32(0.5)), ops.convert(ops.gather(shape, i64(3), i64(0)),
                                                                    "f32"),
                         ops.constant(np.float32(2)), "f32"), "range"),
    ]
    topk = ops.topk(p, ops.constant(np.int64(3)), -1, "min", "index", "i64")
    model = ov.Model(outs + [topk.output(0), topk.output(1)], [p])
    _check_built(model, tmp_path, x4)


def test_built_interpolations(tmp_path, x4):
    require_test_extra("openvino")
    import openvino as ov
    import openvino.opset8 as ops
    from openvino.utils.node_factory import NodeFactory

    p = ops.parameter([2, 4, 9, 10], np.float32, name="x")
    i64 = lambda v: ops.constant(np.array(v, np.int64)).output(0)  # noqa: E731
    f32 = lambda v: ops.constant(np.array(v, np.float32)).output(0)  # noqa: E731
    factory = NodeFactory("opset4")  # Interpolate-4 (the Python opset4 module builds version 1)

    def interp(mode, calc, coord, nearest, sizes, scales, axes):
        attrs = {"mode": mode, "shape_calculation_mode": calc, "coordinate_transformation_mode": coord,
                 "nearest_mode": nearest, "antialias": False, "pads_begin": [0, 0, 0, 0],
                 "pads_end": [0, 0, 0, 0], "cube_coeff": -0.75}
        return factory.create("Interpolate", [p.output(0), i64(sizes), f32(scales), i64(axes)], attrs)

    outs = [
        _named(interp("nearest", "scales", "asymmetric", "floor", [1, 1], [1.5, 2.5], [2, 3]), "n_floor"),
        _named(interp("nearest", "scales", "asymmetric", "simple", [1, 1], [0.5, 0.6], [2, 3]), "n_down"),
        _named(interp("nearest", "scales", "asymmetric", "simple", [1, 1], [2.0, 4.0], [2, 3]), "n_up"),
        _named(interp("linear_onnx", "sizes", "align_corners", "simple", [13, 7], [1, 1], [2, 3]), "lin"),
        _named(interp("linear_onnx", "sizes", "align_corners", "simple", [6, 5], [1, 1], [1, 3]), "lin_c"),
    ]
    _check_built(ov.Model(outs, [p]), tmp_path, x4)


def test_constant_reshape_target_takes_the_input_batch(tmp_path):
    """A Reshape whose constant target bakes in the export's batch 1 runs at any batch."""
    require_test_extra("openvino")
    import openvino as ov
    import openvino.opset8 as ops

    p = ops.parameter([1, 3, 4, 5], np.float32, name="x")
    flat = ops.reshape(p, ops.constant(np.array([1, 60], np.int64)), False)
    model = ov.Model([_named(ops.relu(flat), "y")], [p])
    module = load_openvino_ir(_save(model, tmp_path / "flat.xml"))
    x = torch.randn(3, 3, 4, 5)
    with torch.inference_mode():
        y = module(x)["y"]
    assert y.shape == (3, 60) and torch.equal(y, x.reshape(3, 60).relu())


def test_strided_slice_with_new_and_shrunk_axes_follows_numpy(tmp_path, x4):
    """New-axis and shrink masks together (OpenVINO's CPU plugin of this version returns
    garbage there, so numpy's indexing is the reference)."""
    require_test_extra("openvino")
    import openvino as ov
    import openvino.opset8 as ops

    p = ops.parameter([2, 4, 9, 10], np.float32, name="x")
    i64 = lambda v: ops.constant(np.array(v, np.int64))  # noqa: E731
    y = ops.strided_slice(p, i64([0, 1, 0, -1]), i64([1, 3, 5, 0]), i64([1, 1, 2, -2]),
                          [0, 0, 0, 0], [0, 0, 0, 1], new_axis_mask=[0, 0, 1, 0],
                          shrink_axis_mask=[1, 0, 0, 0])
    module = load_openvino_ir(_save(ov.Model([_named(y, "y")], [p]), tmp_path / "ss.xml"))
    with torch.inference_mode():
        got = module(torch.from_numpy(x4))["y"].numpy()
    np.testing.assert_array_equal(got, x4[0, 1:3, None, ::-2])
