"""First use: fetching says what, from where and how big (on stderr, with a progress bar), and
fetches the whole default pack, so that ``models verify`` passes right after the README set-up."""

from __future__ import annotations

import io
import urllib.request

import pytest

from posetracker.app.cli import main
from posetracker.app.models import DEFAULT_PACK, ModelCache, download_file, resolve_model
from posetracker.core.errors import ModelError


def test_first_use_says_what_and_from_where_then_verify_passes(models_dir, tmp_path,
                                                               monkeypatch, capsys):
    monkeypatch.setenv("POSETRACKER_MODELS", str(models_dir))
    monkeypatch.setenv("POSETRACKER_CACHE", str(tmp_path / "cache"))
    resolve_model("tinypose-256x192")  # as `track` and `estimate` do, with no logger given
    captured = capsys.readouterr()
    assert captured.out == ""  # stdout keeps only results
    err = captured.err.splitlines()
    assert err[0].startswith("posetracker: tinypose-256x192 is not in the cache")
    assert "whole default pack" in err[0] and str(models_dir) in err[0]
    for name in ("tinypose-256x192.xml", "tinypose-256x192.bin", "rtmdet-nano-person.onnx"):
        line = next(x for x in err if f": {name} (" in x)
        assert " MB) from the local folder " in line
    assert sum("fetched and sha256-verified" in x for x in err) == len(DEFAULT_PACK)
    assert main(["models", "verify"]) == 0
    assert capsys.readouterr().out.split() == [w for n in DEFAULT_PACK for w in ("ok", n)]


class _Response(io.BytesIO):
    headers = {"Content-Length": str(3 << 20)}

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def test_download_names_the_url_and_size_with_a_bar(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(urllib.request, "urlopen",
                        lambda url, timeout=None: _Response(b"x" * (3 << 20)))
    lines: list[str] = []
    dest = tmp_path / "m.bin"
    download_file("https://example.invalid/m.bin", dest, lines.append, progress=True)
    assert dest.stat().st_size == 3 << 20
    assert lines == ["downloading https://example.invalid/m.bin (3.1 MB)"]
    bar = capsys.readouterr().err
    assert "m.bin" in bar and "3.15M" in bar  # tqdm's bar, in bytes, on stderr


def test_a_broken_connection_is_a_download_error_not_a_disk_error(tmp_path, monkeypatch):
    class Broken(_Response):
        def read(self, n=-1):
            raise ConnectionResetError(104, "Connection reset by peer")

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: Broken(b""))
    with pytest.raises(ModelError, match="cannot download https://example.invalid/m.bin.*reset"):
        download_file("https://example.invalid/m.bin", tmp_path / "m.bin")
    assert list(tmp_path.iterdir()) == []


def test_fetch_from_a_folder_lists_every_file_with_its_size(models_dir, tmp_path, capsys):
    assert main(["models", "fetch", "--from", str(models_dir), "--cache",
                 str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "rtmdet-nano: rtmdet-nano-person.onnx (4.0 MB) from the local folder" in out
    assert ModelCache(tmp_path / "c").verify()[1] == []
