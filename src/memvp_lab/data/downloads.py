"""Dataset files fetched from their public sources: resumed when interrupted, verified, unpacked.

A source is fetched into ``<file>.part`` (an interrupted fetch continues from the bytes it has:
an HTTP range request, or a seek for ``file://``), checked (size and SHA-256 where the source
publishes them; that a JSON file parses and an archive opens), then renamed into place beside a
``<file>.verified.json`` record. A verified file is never fetched again. A file that fails its
check is removed and named in the error, so the next run fetches it afresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tarfile
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from memvp_lab.errors import DataError

log = logging.getLogger(__name__)

CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """One file of a dataset.

    Attributes:
        url: where it is published (``https://...``; ``file://`` for a local mirror).
        to: its path under the task root.
        size: its size in bytes, where the source publishes it (checked), else None.
        sha256: its checksum, where the source publishes it (checked), else None.
        unpack: a folder under the task root to unpack the archive into, or None.
        manual: set for a file that cannot be fetched automatically (a form, a login): where
            to get it. The file is then only looked for at ``to`` and checked.
    """

    url: str = ""
    to: str = ""
    size: int | None = None
    sha256: str | None = None
    unpack: str | None = None
    manual: str | None = None


def mirrored(url: str, mirror: str | None) -> str:
    """``url`` read from a mirror instead: ``<mirror>/<host>/<path>``."""
    if not mirror:
        return url
    parts = urllib.parse.urlsplit(url)
    return f"{mirror.rstrip('/')}/{parts.netloc}{parts.path}"


def record_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def is_verified(path: Path) -> bool:
    """The file was fetched and checked, and has not changed size since."""
    record = record_path(path)
    if not (path.is_file() and record.is_file()):
        return False
    return json.loads(record.read_text()).get("size") == path.stat().st_size


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _copy_from(response, part: Path, append: bool) -> None:
    with part.open("ab" if append else "wb") as out:
        shutil.copyfileobj(response, out, CHUNK)


def download(url: str, part: Path) -> None:
    """Fetches ``url`` into ``part``, continuing from the bytes ``part`` already has."""
    offset = part.stat().st_size if part.exists() else 0
    part.parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("file://"):
        path = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
        if not path.is_file():
            raise DataError(f"{url}: no such file in the mirror")
        with path.open("rb") as src:
            src.seek(offset)
            _copy_from(src, part, append=True)
        return
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    request = urllib.request.Request(url, headers={"User-Agent": "memvp_lab", **headers})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            resumed = offset and response.status == 206  # 200: the server sends the whole file again
            if offset and not resumed:
                log.info("%s: the server does not resume; fetching it from the start", url)
            _copy_from(response, part, append=bool(resumed))
    except OSError as err:  # URLError, HTTPError, timeouts: the bytes so far stay in the .part file
        raise DataError(f"{url}: {err}; run the command again to continue (kept {part})") from None


def remote_size(url: str, timeout: float = 10) -> int | None:
    """The size the server reports for ``url`` (a HEAD request; a ``file://`` mirror: the file's
    size), or None when it does not say or cannot be reached."""
    try:
        if url.startswith("file://"):
            path = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
            return path.stat().st_size if path.is_file() else None
        request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "memvp_lab"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
        return int(length) if length is not None else None
    except (OSError, ValueError):
        return None


def check(path: Path, source: Source) -> str:
    """Raises ``DataError`` naming the file when it fails a published size/checksum or does not
    open as what its name says; returns its SHA-256."""
    name = Path(source.to).name
    size = path.stat().st_size
    if source.size is not None and size != source.size:
        raise DataError(f"{name} from {source.url}: {size} bytes, the source publishes {source.size}")
    digest = _sha256(path)
    if source.sha256 and digest != source.sha256.lower():
        raise DataError(f"{name} from {source.url}: checksum mismatch (SHA-256 {digest}, published {source.sha256})")
    try:
        if name.endswith(".json"):
            json.loads(path.read_text())
        elif name.endswith(".jsonl"):
            with path.open() as f:
                for line in f:
                    if line.strip():
                        json.loads(line)
        elif name.endswith(".zip"):
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
            if bad is not None:
                raise DataError(f"{name} from {source.url}: member {bad} is corrupt")
        elif ".tar" in name or name.endswith(".tgz"):
            with tarfile.open(path) as t:
                t.getmembers()
    except (ValueError, zipfile.BadZipFile, tarfile.TarError, EOFError) as err:
        raise DataError(f"{name} from {source.url}: not a valid {Path(name).suffix[1:]} file ({err})") from None
    return digest


def fetch(source: Source, root: Path, mirror: str | None = None) -> Path:
    """The verified file of ``source`` under ``root``, fetched (or resumed) only if needed."""
    path = root / source.to
    if is_verified(path):
        return path
    if source.manual:
        if not path.is_file():
            raise DataError(f"{path} is missing: {source.manual}")
        target = path
    else:
        target = path.with_name(path.name + ".part")
        url = mirrored(source.url, mirror)
        have = target.stat().st_size if target.exists() else 0
        log.info("fetching %s%s", url, f" (resuming after {have:,} bytes)" if have else "")
        download(url, target)
    try:
        digest = check(target, source)
    except DataError:
        if target != path:
            target.unlink()  # a bad download is fetched afresh next time; a placed file is left to its owner
        raise
    if target != path:
        target.replace(path)
    record_path(path).write_text(json.dumps({"url": source.url, "size": path.stat().st_size, "sha256": digest}))
    return path


def unpack(archive: Path, into: Path) -> None:
    """Unpacks ``archive`` into ``into`` once (a ``.unpacked`` marker records it); members that
    would land outside ``into`` are refused."""
    marker = archive.with_name(archive.name + ".unpacked")
    if marker.is_file():
        return
    into.mkdir(parents=True, exist_ok=True)
    base = into.resolve()
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            for member in z.namelist():
                if not (base / member).resolve().is_relative_to(base):
                    raise DataError(f"{archive.name}: member {member} would be written outside {into}")
            z.extractall(into)
    else:
        with tarfile.open(archive) as t:
            t.extractall(into, filter="data")
    marker.write_text("")
    log.info("unpacked %s into %s", archive.name, into)
