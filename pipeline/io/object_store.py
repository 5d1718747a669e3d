"""Object stores (S3 and its kin): which filesystems have no rename, and opening a URL whose
fsspec backend comes with the `remote` extra.

On an object store a `mv` is a copy and a delete, and a listing may be served from a cache that
other processes' writes have made stale; `io/atomic.py` and `output_fs` avoid both.
"""

from __future__ import annotations

from typing import Any

import fsspec
from fsspec.utils import get_protocol

# fsspec protocols of object stores: an object appears whole when its upload completes, and
# nothing renames one in place.
OBJECT_STORE_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss"})
REMOTE_EXTRA = "pip install 'pipeline[remote]'"


def is_object_store(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether `fs` is an object store (no atomic rename)."""
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    return any(p in OBJECT_STORE_PROTOCOLS for p in protocols)


def abort_unfinished_uploads(fs: fsspec.AbstractFileSystem, path: str) -> int:
    """Abort the multipart uploads under `path` of an S3 filesystem that never completed (an
    upload killed part way: invisible to listings, but stored and billed); returns how many.
    Only while no writer uploads there (the run holds the output's lock). Other stores: 0."""
    if not hasattr(fs, "call_s3"):
        return 0
    bucket, _, prefix = fs._strip_protocol(path).partition("/")
    prefix = f"{prefix.rstrip('/')}/" if prefix else ""
    aborted, markers = 0, {}
    while True:
        page = fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix, **markers)
        for upload in page.get("Uploads", []):
            fs.abort_mpu(bucket, upload["Key"], upload["UploadId"])
            aborted += 1
        if not page.get("IsTruncated"):
            return aborted
        markers = {
            "KeyMarker": page["NextKeyMarker"],
            "UploadIdMarker": page["NextUploadIdMarker"],
        }


def url_filesystem(
    url: str, *, fresh: bool = False, **options: Any
) -> tuple[fsspec.AbstractFileSystem, str]:
    """`fsspec.core.url_to_fs(url, **options)`; ImportError says which extra brings the
    backend (s3fs for s3://) in one line. `fresh`: on an object store, listings are never
    served from a cache, so objects other processes (Ray workers, an earlier run in this
    process) wrote or rewrote since are seen as they are now."""
    if fresh and get_protocol(url) in OBJECT_STORE_PROTOCOLS:
        options["use_listings_cache"] = False
    try:
        return fsspec.core.url_to_fs(url, **options)
    except ImportError as exc:
        protocol = get_protocol(url)
        raise ImportError(
            f"{protocol}:// needs the `remote` extra ({REMOTE_EXTRA}): {_first_line(exc)}"
        ) from None


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
