"""`input.paths_file`: input files listed one per line in a text file, as Common Crawl's
`warc.paths.gz` (the ~90,000 relative paths of one crawl's WARC files).

Surrounding whitespace is dropped; blank lines and lines starting with `#` are skipped. A line
that is a URL (`s3://...`, `https://...`), an absolute path or a `~` path is taken as it is; a
relative one is joined to `base` (input.base_url, or the paths file's own directory). A line that
cannot be a path (not UTF-8, control characters, longer than MAX_LINE_BYTES: a data file named
by mistake) is an error naming its line, as is a file that lists nothing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import IO

from pipeline.errors import InputError

MAX_LINE_BYTES = 4096  # longer than any path a file system or object store takes
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class ListedPath:
    """One path of a paths file, joined to its base, and the line it came from (1-based)."""

    path: str
    line: int


def listed_paths(stream: IO[bytes], source: str, base: str) -> list[ListedPath]:
    """The paths the lines of `stream` (the paths file `source`, decompressed) list, relative
    ones joined to `base`; InputError naming the line for a line that is not a path, or when
    the file lists none."""
    found: list[ListedPath] = []
    number = 0
    while raw := stream.readline(MAX_LINE_BYTES + 1):
        number += 1
        where = f"input.paths_file {source}, line {number}"
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            raise InputError(
                f"{where}: longer than {MAX_LINE_BYTES} bytes, not a path; a paths file lists "
                "one file per line (data files go in input.paths)"
            )
        try:
            line = raw.decode("utf-8").strip().removeprefix("\ufeff")
        except UnicodeDecodeError:
            raise InputError(
                f"{where}: not UTF-8 text; a paths file lists one file per line (data files go "
                "in input.paths)"
            ) from None
        if not line or line.startswith("#"):
            continue
        if _CONTROL.search(line):
            raise InputError(
                f"{where}: holds control characters, not a path; a paths file lists one file "
                "per line (data files go in input.paths)"
            )
        found.append(ListedPath(joined(base, line), number))
    if not found:
        raise InputError(
            f"input.paths_file {source} lists no files ({number} lines, all blank or comments)"
        )
    return found


def joined(base: str, line: str) -> str:
    """`line` as it is when it is a URL, an absolute or a `~` path; else appended to `base` (a
    URL prefix or a local directory)."""
    if "://" in line or "::" in line or line.startswith(("/", "~")):
        return line
    if "://" in base or "::" in base:
        return base.rstrip("/") + "/" + line
    return os.path.join(os.path.expanduser(base), line)


def parent_of(source: str) -> str:
    """The directory (or URL prefix) a paths file lies in: the base of its relative lines when
    input.base_url is not set."""
    if "://" in source or "::" in source:
        return source.rsplit("/", 1)[0]
    return os.path.dirname(os.path.abspath(os.path.expanduser(source)))
