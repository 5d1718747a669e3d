"""Input planning: paths, globs, directories and URLs -> a sorted list of InputUnits.

Format detection (input.format: auto) goes by the file name, compression suffix removed:
  *.warc -> warc; *.wet / *.warc.wet -> wet; *.jsonl / *.json / *.ndjson -> jsonl;
  *.parquet -> parquet; a directory written by `datasets.save_to_disk` (state.json or
  dataset_dict.json) -> hf, one unit per Arrow data file.
WAT files (*.wat / *.warc.wat) hold only metadata records: they are read as WARC, so every record
is counted (as skipped `metadata`) rather than a file silently left out. A path that exists is
taken literally even when it holds glob characters (`crawl[2024].jsonl`). Inside directories and
globs, files whose format cannot be told from the name (READMEs, checksums, _SUCCESS, hidden
files) are left out; named explicitly they are an error. With a fixed input.format every non-hidden file found is read in that format.

input.paths_file adds the files a text file lists (pipeline/io/paths_file.py): a local line is
planned like an entry of input.paths; a remote line is taken as one file without a request (a
missing one is counted as `unreadable_file` when read), and its unit is not stat'ed for the
run's input record either, so 90,000 lines plan in seconds. input.sample_files then keeps a
seeded sample of the units (pipeline/io/sample.py).
"""

from __future__ import annotations

import bz2
import glob as globlib
import gzip
import hashlib
import io
import json
import logging
import lzma
import os
import posixpath
import stat
import zlib
from collections.abc import Iterator
from typing import IO, Any

import fsspec
import pyarrow as pa
import zstandard
from fsspec.utils import get_protocol

from pipeline.errors import ConfigError, InputError
from pipeline.io.base import InputUnit, Reader, ReaderStats
from pipeline.io.object_store import url_filesystem
from pipeline.io.options import InputConfig
from pipeline.io.paths_file import ListedPath, listed_paths, parent_of
from pipeline.io.sample import sample_units

log = logging.getLogger(__name__)

FORMATS = ("warc", "wet", "jsonl", "parquet", "hf")
COMPRESSION_SUFFIXES = (".gz", ".zst", ".zstd", ".bz2", ".xz", ".lz4")
GLOB_CHARS = ("*", "?", "[")
_LOCAL_PROTOCOLS = ("file", "local")
_HF_MARKERS = ("state.json", "dataset_dict.json")
RUN_RECORD_DIR = "_run"  # what marks a directory as a curate run's output (pipeline.runner.unit)


def detect_format(name: str) -> str | None:
    """'warc' | 'wet' | 'jsonl' | 'parquet' from a file name (WAT reads as warc); None if unknown."""
    base = posixpath.basename(name.rstrip("/")).lower()
    if base.endswith(".parquet"):
        return "parquet"
    for suffix in COMPRESSION_SUFFIXES:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    if base.endswith(".wet"):
        return "wet"
    if base.endswith((".warc", ".wat")):
        return "warc"
    if base.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    return None


def _protocols(url: str) -> list[str]:
    """Every protocol in a (possibly chained, `a::b://`) URL; 'file' for a local path.

    In a chain, a part before `::` without `://` is itself a protocol name (`simplecache::s3://`,
    `reference::s3://...`): it is checked like any other, not mistaken for a local path.
    """
    parts = url.split("::")
    return [
        part.strip().lower()
        if "://" not in part and i < len(parts) - 1
        else get_protocol(part) or "file"
        for i, part in enumerate(parts)
    ]


def _check_protocol(url: str, allowed: list[str]) -> bool:
    """Raise InputError for a protocol the config does not allow; True when the path is local."""
    allowed_set = set(allowed) | ({"local"} if "file" in allowed else set())
    protocols = _protocols(url)
    for proto in protocols:
        if proto not in allowed_set:
            raise InputError(
                f"input path {url!r} uses protocol '{proto}', which is not allowed; "
                f"add '{proto}' to input.allowed_protocols (now {sorted(allowed)})"
            )
    return all(p in _LOCAL_PROTOCOLS for p in protocols)


def filesystem(url: str, fresh: bool = False) -> tuple[fsspec.AbstractFileSystem, str]:
    """fsspec filesystem and in-filesystem path for a URL, with a clear error if unsupported
    (`fresh`: listings never from a cache, for a run's output others may have rewritten)."""
    try:
        return url_filesystem(url, fresh=fresh)
    except (ImportError, ValueError) as e:
        raise InputError(f"cannot open {url!r}: {e}") from e


def _ignored(name: str) -> bool:
    """Files never treated as data inside directories: hidden, _SUCCESS-style, checksums."""
    base = posixpath.basename(name)
    return base.startswith((".", "_")) or base.endswith((".crc", ".md5", ".sha1", ".sha256"))


class NotRegularFile(OSError):
    """A local input that is not a regular file: a FIFO blocks `open()` until a writer comes, a
    device (/dev/zero) never ends. Such a path is counted as unreadable, never read."""


_FILE_TYPES = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


def _require_regular(mode: int) -> None:
    """Raise NotRegularFile naming the file type unless `mode` is a regular file's."""
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _FILE_TYPES if test(mode)), "not a plain file")
    raise NotRegularFile(f"{kind}, not a regular file; only regular files are read")


def check_regular(path: str) -> None:
    """For a local path, raise NotRegularFile (or the stat error) unless it is a regular file
    (symlinks followed); remote URLs pass."""
    if get_protocol(path) in _LOCAL_PROTOCOLS and "::" not in path:
        _require_regular(os.stat(path.removeprefix("file://")).st_mode)


def open_binary(path: str) -> IO[bytes]:
    """Open a local path or fsspec URL for binary reading (no decompression). A local path must
    be a regular file (NotRegularFile otherwise): checked before opening, and again on the open
    descriptor, opened non-blocking so a FIFO swapped in between cannot hang the open."""
    if get_protocol(path) in _LOCAL_PROTOCOLS and "::" not in path:
        check_regular(path)
        f = open(  # noqa: SIM115 - the caller closes it
            path.removeprefix("file://"),
            "rb",
            buffering=1 << 20,
            opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK),
        )
        try:
            _require_regular(os.fstat(f.fileno()).st_mode)
            os.set_blocking(f.fileno(), True)
        except BaseException:
            f.close()
            raise
        return f
    return fsspec.open(path, "rb").open()


def decompressing(raw: IO[bytes], path: str) -> IO[bytes]:
    """Wrap an open binary stream to decompress by `path` suffix (.gz .zst/.zstd .bz2 .xz).

    The wrapper does not close `raw`; callers close both (`with raw, decompressing(...)`)."""
    name = path.lower()
    if name.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if name.endswith((".zst", ".zstd")):
        reader = zstandard.ZstdDecompressor().stream_reader(
            raw, read_across_frames=True, closefd=False
        )
        return io.BufferedReader(reader, buffer_size=1 << 20)  # type: ignore[arg-type]
    if name.endswith(".bz2"):
        return bz2.BZ2File(raw)  # type: ignore[return-value]
    if name.endswith(".xz"):
        return lzma.LZMAFile(raw)  # type: ignore[return-value]
    return raw


def hf_data_files(directory: str) -> list[str]:
    """The Arrow data files of a `save_to_disk` dataset directory, in shard order."""
    fs, root = filesystem(directory)
    try:
        with fs.open(posixpath.join(root, "state.json"), "rb") as f:
            state = json.load(f)
        files = [entry["filename"] for entry in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{directory}: unreadable HF dataset state.json ({e})") from e
    if not files:
        raise InputError(f"{directory}: HF dataset has no data files")
    return files


def _hf_units(
    fs: fsspec.AbstractFileSystem, root: str, url: str, split: str | None = None
) -> list[tuple[str, str, int, int]]:
    """(path, 'hf', shard, num_shards) for a save_to_disk dir; of a DatasetDict, the units of
    `split` (input.split), which may be left out only when it has one split."""
    if fs.isfile(posixpath.join(root, "dataset_dict.json")):
        try:
            with fs.open(posixpath.join(root, "dataset_dict.json"), "rb") as f:
                splits = [str(s) for s in json.load(f)["splits"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"{url}: unreadable HF dataset_dict.json ({e})") from e
        if split is None and len(splits) == 1:
            split = splits[0]
        if split not in splits:
            what = "set input.split to one" if split is None else f"no split {split!r}; choose one"
            raise InputError(
                f"{url} is a DatasetDict with splits {', '.join(splits) or '(none)'}: {what} "
                "(input.split)"
            )
        return _hf_units(fs, posixpath.join(root, split), _join(url, split))
    n = len(hf_data_files(url))
    return [(url, "hf", i, n) for i in range(n)]


def _join(url: str, name: str) -> str:
    """Append a path component to a local path or URL."""
    return os.path.join(url, name) if get_protocol(url) in _LOCAL_PROTOCOLS else f"{url}/{name}"


def _is_hf_dir(fs: fsspec.AbstractFileSystem, root: str) -> bool:
    """Whether `root` is a directory written by `datasets.save_to_disk`."""
    return any(fs.isfile(posixpath.join(root, marker)) for marker in _HF_MARKERS)


class _Planner:
    """Collects (path, format, shard, num_shards) tuples for one InputConfig."""

    def __init__(self, cfg: InputConfig) -> None:
        self.cfg = cfg
        self.found: set[tuple[str, str, int, int]] = set()
        self.unchecked: set[str] = set()  # remote files of input.paths_file, never looked up

    def add_file(self, path: str, explicit: bool, where: str = "input.paths") -> None:
        """Add one file, detecting its format unless the config fixes it; `where` names the
        key (or paths file line) that lists it, for errors."""
        if self.cfg.format != "auto":
            if explicit or not _ignored(path):
                self.found.add((path, self.cfg.format, 0, 1))
            return
        fmt = detect_format(path)
        if fmt in FORMATS:
            self.found.add((path, fmt, 0, 1))
        elif explicit:
            raise InputError(
                f"cannot tell the format of {path} from its name ({where}); set input.format to "
                "one of "
                f"{', '.join(FORMATS)}"
            )

    def add_dir(self, fs: fsspec.AbstractFileSystem, root: str, url: str) -> None:
        """Add a directory: an HF dataset as such, otherwise its files recursively."""
        if _is_hf_dir(fs, root):
            self.found.update(_hf_units(fs, root, url, self.cfg.split))
            return
        files = _outside_runs(sorted(fs.find(root)), root)
        hf_roots = sorted(
            {posixpath.dirname(f) for f in files if posixpath.basename(f) in _HF_MARKERS}
        )
        hf_roots = [r for r in hf_roots if not any(r.startswith(h + "/") for h in hf_roots)]
        for hf_root in hf_roots:
            self.found.update(
                _hf_units(fs, hf_root, self._url(fs, hf_root, url, root), self.cfg.split)
            )
        for f in files:
            if any(f.startswith(h + "/") for h in hf_roots):
                continue
            rel = posixpath.relpath(f, root)
            if any(_ignored(part) for part in rel.split("/")):
                continue
            self.add_file(self._url(fs, f, url, root), explicit=False)

    @staticmethod
    def _url(fs: fsspec.AbstractFileSystem, path: str, url: str, root: str) -> str:
        """A path found under `root` back as a local absolute path or a full URL."""
        if get_protocol(url) in _LOCAL_PROTOCOLS and "::" not in url:
            return os.path.abspath(path)
        return fs.unstrip_protocol(path)

    def add_listed(self, path: str, where: str) -> None:
        """Add one line of input.paths_file: a local path as an entry of input.paths is added;
        a remote one as one file, not looked up (that would cost a request per line)."""
        if _check_protocol(path, self.cfg.allowed_protocols):
            self.add(path, where)
            return
        before = len(self.found)
        self.add_file(path, explicit=True, where=where)
        if len(self.found) > before:
            self.unchecked.add(path)

    def add(self, raw: str, where: str = "input.paths") -> None:
        """Expand one entry of input.paths (`where`: what lists it, for errors)."""
        local = _check_protocol(raw, self.cfg.allowed_protocols)
        if local:
            self._add_local(os.path.expanduser(raw.removeprefix("file://")), raw, where)
            return
        fs, root = filesystem(raw)
        if _protocols(raw)[-1] in ("http", "https"):
            self._add_http(fs, root, raw, where)
            return
        try:
            if any(c in root for c in GLOB_CHARS) and not fs.exists(root):
                matches = sorted(fs.glob(root))
                if not matches:
                    raise InputError(f"no files match {raw!r}; check {where}")
                for m in matches:
                    if fs.isdir(m):
                        self.add_dir(fs, m, fs.unstrip_protocol(m))
                    else:
                        self.add_file(fs.unstrip_protocol(m), explicit=False)
            elif fs.isdir(root):
                self.add_dir(fs, root, raw.rstrip("/"))
            elif fs.exists(root):
                self.add_file(raw, explicit=True, where=where)
            else:
                raise InputError(f"input path not found: {raw!r}; check {where}")
        except (OSError, PermissionError) as e:
            raise InputError(f"cannot list {raw!r}: {e}") from e

    def _add_http(self, fs: fsspec.AbstractFileSystem, root: str, raw: str, where: str) -> None:
        """An http(s) URL is one file: checked with a HEAD request, never listed (listing
        would download the whole file to look for links)."""
        try:
            fs.info(root)
        except FileNotFoundError as e:
            raise InputError(f"input URL not found: {raw!r}; check {where}") from e
        except OSError as e:
            raise InputError(f"cannot reach {raw!r}: {e}") from e
        self.add_file(raw, explicit=True, where=where)

    def _add_local(self, path: str, raw: str, where: str) -> None:
        """Expand a local path, directory or glob (`**` recursive)."""
        from fsspec.implementations.local import LocalFileSystem

        fs = LocalFileSystem()
        if any(c in path for c in GLOB_CHARS) and not os.path.lexists(path):
            matches = sorted(globlib.glob(path, recursive=True))
            if not matches:
                raise InputError(f"no files match {raw!r}; check {where}")
            for m in matches:
                m = os.path.abspath(m)
                if os.path.isdir(m):
                    self.add_dir(fs, m, m)
                elif not _ignored(m):
                    self.add_file(m, explicit=False)
            return
        path = os.path.abspath(path)
        if os.path.isdir(path):
            if not os.access(path, os.R_OK | os.X_OK):
                raise InputError(
                    f"cannot read directory {raw!r}: permission denied; fix its permissions or "
                    f"remove it from {where}"
                )
            self.add_dir(fs, path, path)
        elif os.path.isfile(path):
            if not os.access(path, os.R_OK):
                raise InputError(
                    f"cannot read {raw!r}: permission denied; fix its permissions or remove it "
                    f"from {where}"
                )
            self.add_file(path, explicit=True, where=where)
        elif os.path.exists(path):  # a FIFO, device or socket: its reader counts it unreadable
            self.add_file(path, explicit=True, where=where)
        else:
            raise InputError(f"input path not found: {raw!r}; check {where}")


def _outside_runs(files: list[str], root: str) -> list[str]:
    """`files` found under `root` less those inside another curate output directory (one
    holding a `_run/` record, or an ablation's): a run's output is never read as input."""
    outputs = set()
    for f in files:
        parts = posixpath.relpath(f, root).split("/")
        if RUN_RECORD_DIR in parts[1:-1]:
            outputs.add(posixpath.join(root, *parts[: parts.index(RUN_RECORD_DIR, 1)]) + "/")
    if not outputs:
        return files
    return [f for f in files if not any(f.startswith(o) for o in outputs)]


def _location(path: str) -> str:
    """A path or URL in the form units carry: absolute for local paths, protocol kept for URLs."""
    if get_protocol(path) in _LOCAL_PROTOCOLS and "::" not in path:
        return os.path.abspath(os.path.expanduser(path.removeprefix("file://")))
    fs, root = filesystem(path)
    return fs.unstrip_protocol(root)


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def plan_units(
    cfg: InputConfig, exclude: tuple[str, ...] = (), where: str = "input.paths"
) -> list[InputUnit]:
    """Expand input.paths and the lines of input.paths_file into de-duplicated units sorted by
    (path, shard), indexed 0..n-1; with input.sample_files, a seeded sample of them.

    Files inside an `exclude` directory (the run's own output) and inside any curate output
    directory found while walking are left out, so a rerun never reads its own output back.
    `where` names what lists `cfg.paths` in errors (a CLI flag, a stage key)."""
    if not cfg.paths and cfg.paths_file is None:
        raise InputError(
            "input.paths is empty; list files, directories, globs or URLs (or name a file "
            "listing them: input.paths_file)"
        )
    planner = _Planner(cfg)
    for raw in cfg.paths:
        planner.add(str(raw), where)
    if cfg.paths_file is not None:
        for listed in read_paths_file(cfg):
            planner.add_listed(listed.path, f"line {listed.line} of input.paths_file")
    skip = [_location(d) for d in exclude]
    planner.found = {t for t in planner.found if not any(_inside(t[0], d) for d in skip)}
    if not planner.found:
        where = cfg.paths + ([f"the files of {cfg.paths_file}"] if cfg.paths_file else [])
        raise InputError(
            f"no readable input files found in {where}; supported names end in .warc(.gz), "
            ".warc.wet(.gz), .jsonl(.gz/.zst), .parquet, or set input.format"
        )
    ordered = sorted(planner.found, key=lambda t: (t[0], t[2], t[1]))
    units = [
        InputUnit(
            index=i,
            path=path,
            format=fmt,
            shard=shard,
            num_shards=n,
            checked=path not in planner.unchecked,
        )
        for i, (path, fmt, shard, n) in enumerate(ordered)
    ]
    if cfg.sample_files is None:
        return units
    sample = sample_units(units, cfg.sample_files, cfg.seed)
    log.info("input.sample_files: %d of %d files (seed %d)", len(sample), len(units), cfg.seed)
    return sample


def read_paths_file(cfg: InputConfig) -> list[ListedPath]:
    """The paths input.paths_file lists, relative lines joined to input.base_url (or the paths
    file's directory); InputError when the file cannot be read or holds no list of paths."""
    source = str(cfg.paths_file)
    local = _check_protocol(source, cfg.allowed_protocols)
    opened = os.path.expanduser(source.removeprefix("file://")) if local else source
    base = cfg.base_url if cfg.base_url is not None else parent_of(opened)
    if not local:
        filesystem(source)  # an unknown protocol or a missing extra: one clear line
    try:
        with open_binary(opened) as raw, decompressing(raw, source) as stream:
            return listed_paths(stream, source, base)
    except FileNotFoundError:
        raise InputError(f"input.paths_file not found: {source!r}") from None
    except (OSError, EOFError, zlib.error, lzma.LZMAError, zstandard.ZstdError) as e:
        raise InputError(f"cannot read input.paths_file {source!r}: {e}") from None


def get_reader(fmt: str, cfg: InputConfig) -> Reader:
    """The Reader for a unit format."""
    if fmt == "warc":
        from pipeline.io.warc import WarcReader

        return WarcReader(cfg)
    if fmt == "wet":
        from pipeline.io.warc import WetReader

        return WetReader(cfg)
    if fmt == "jsonl":
        from pipeline.io.jsonl import JsonlReader

        return JsonlReader(cfg)
    if fmt == "parquet":
        from pipeline.io.parquet import ParquetReader

        return ParquetReader(cfg)
    if fmt == "hf":
        from pipeline.io.hf import HFReader

        return HFReader(cfg)
    raise InputError(f"unknown input format {fmt!r}; input.format must be one of {FORMATS}")


def _stamp(unit: InputUnit) -> tuple[int | None, str | None]:
    """(size, mtime-or-etag) of the file behind a unit; (None, None) if it cannot be stat'ed or
    is a remote file of input.paths_file (not looked up: a request each)."""
    if not unit.checked:
        return None, None
    path = unit.path
    try:
        if unit.format == "hf" and _is_hf_dir(*filesystem(path)):
            path = _join(unit.path, hf_data_files(unit.path)[unit.shard])
    except (OSError, InputError, IndexError):
        return None, None
    try:
        if get_protocol(path) in _LOCAL_PROTOCOLS and "::" not in path:
            st = os.stat(path.removeprefix("file://"))
            return st.st_size, str(st.st_mtime_ns)
        fs, root = filesystem(path)
        info = fs.info(root)
    except (OSError, InputError):
        return None, None
    stamp = next(
        (
            str(info[k])
            for k in ("ETag", "etag", "e_tag", "md5", "mtime", "LastModified", "last_modified")
            if info.get(k) is not None
        ),
        None,
    )
    return info.get("size"), stamp


def unit_identity(unit: InputUnit) -> dict[str, Any]:
    """What identifies a unit's input: path, format, shard and the file's size and mtime (or
    etag/checksum for remote objects). Equal identities mean the same bytes, to the extent a
    stat can tell."""
    size, stamp = _stamp(unit)
    return {
        "path": unit.path,
        "format": unit.format,
        "shard": unit.shard,
        "num_shards": unit.num_shards,
        "size": size,
        "stamp": stamp,
    }


def input_fingerprint(units: list[InputUnit]) -> str:
    """A sha256 over the identity (unit_identity) of every unit, for caches."""
    h = hashlib.sha256()
    for u in sorted(units, key=lambda u: (u.path, u.shard, u.format)):
        h.update(json.dumps(list(unit_identity(u).values())).encode() + b"\n")
    return h.hexdigest()


def read_unit(
    unit: InputUnit, cfg: InputConfig, stats: ReaderStats, batch_size: int
) -> Iterator[pa.Table]:
    """A unit's batches through its reader, for a run or the ablation score cache: when the
    reading ends with every record skipped for a configuration reason (no `text` field), a
    ConfigError naming the key to set, so no unit ends as a silent empty shard. A unit with a
    `limit` stops after that many documents (io/limit.py); one read already (`unit.preread`)
    is replayed, not read again."""
    if unit.preread is not None:
        yield from unit.preread.replay(stats)
    elif unit.limit is None:
        yield from get_reader(unit.format, cfg).read(unit, stats, batch_size)
    else:
        batch_size = min(batch_size, unit.limit)
        batches = get_reader(unit.format, cfg).read(unit, stats, batch_size)
        yield from first_documents(batches, unit.limit, stats)
    if problem := stats.config_problem(unit.path):
        raise ConfigError(problem)


def first_documents(
    batches: Iterator[pa.Table], limit: int, stats: ReaderStats
) -> Iterator[pa.Table]:
    """The first `limit` rows of a reader's batches; the reader is closed there (no further
    record read). Rows of the last batch past the limit, already counted as documents by the
    reader, are counted as `over_limit` skips instead, so the stats still balance."""
    emitted = 0
    try:
        for batch in batches:
            keep = min(batch.num_rows, limit - emitted)
            if keep < batch.num_rows:
                stats.documents -= batch.num_rows - keep
                stats.skipped["over_limit"] += batch.num_rows - keep
            if keep:
                yield batch.slice(0, keep)
            emitted += keep
            if emitted >= limit:
                return
    finally:
        batches.close()  # type: ignore[attr-defined]
