"""A folder of code as a deterministic ``.tar.gz`` S3 asset: its hash changes only when the code does.

The archive is built at synth (sorted entries, mtime 0, uid/gid 0, no owner names, normalized
modes, gzip header without name or time; what ``bundle_files`` leaves out left out) next to the
cloud assembly, then staged by ``aws_s3_assets.Asset`` as ``asset.<hash>.tar.gz`` (uploaded as ``<hash>.gz``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

from aws_cdk import Stage
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from stacks.constructs.bundle_files import bundle_files


def archive_bytes(folder: Path) -> bytes:
    """The deterministic ``.tar.gz`` of ``folder``'s files, paths relative to it."""
    if not folder.is_dir():
        raise FileNotFoundError(f"source archive: {folder} is not a directory")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in bundle_files(folder):
            data = path.read_bytes()
            info = tarfile.TarInfo(path.relative_to(folder).as_posix())
            info.size, info.mtime, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0, 0, "", ""
            info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def write_archive(folder: Path, outdir: Path) -> Path:
    """Write the archive under ``outdir`` (named by its content hash, so a rebuild is a no-op)."""
    data = archive_bytes(folder)
    target = outdir / f"{folder.name}-{hashlib.sha256(data).hexdigest()[:16]}.tar.gz"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return target


def source_archive_asset(scope: Construct, id: str, *, folder: Path) -> s3_assets.Asset:
    """Stage ``folder`` as a ``.tar.gz`` file asset (built once per content under the app's output directory).

    The S3 object key keeps only the last extension: ``<hash>.gz``; the staged file is ``asset.<hash>.tar.gz``.
    """
    app = scope.node.root
    if not isinstance(app, Stage):
        raise TypeError(f"source archive {id}: the construct tree's root is not an App")
    outdir = Path(app.outdir) / "source-archives"
    return s3_assets.Asset(scope, id, path=str(write_archive(folder, outdir)))
