"""Bounded reading: a line is never held beyond `input.max_record_bytes`, a file never yields
more than `input.max_file_bytes`, so one giant line, a decompression bomb or an endless device
costs bounded memory and time instead of a kernel OOM kill."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import IO

# Bytes read at a time while skipping the rest of an over-long line.
SKIP_CHUNK = 1 << 20
# Bytes taken from the decompressor per read: small, so the lines before a corrupt part of a
# compressed stream are yielded before the decompressor raises on it.
READ_CHUNK = 1 << 16


class FileTooLarge(OSError):
    """A file yielded more than its byte limit after decompression."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"more than {limit} bytes after decompression (input.max_file_bytes); "
            "the rest of the file is not read"
        )


class _Capped(io.RawIOBase):
    """The bytes of `inner`, raising FileTooLarge where more than `limit` would come out."""

    def __init__(self, inner: IO[bytes], limit: int) -> None:
        self.inner = inner
        self.limit = limit
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        room = self.limit - self.count
        if room <= 0:
            if self.inner.read(1):
                raise FileTooLarge(self.limit)
            return 0
        view = memoryview(buffer)
        data = self.inner.read(min(len(view), room, READ_CHUNK))
        view[: len(data)] = data
        self.count += len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self.inner.close()
        super().close()


def capped(stream: IO[bytes], limit: int) -> IO[bytes]:
    """`stream` (decompressed bytes) buffered, raising FileTooLarge past `limit` bytes.

    Closing the result closes `stream`."""
    return io.BufferedReader(_Capped(stream, limit), buffer_size=READ_CHUNK)  # type: ignore[return-value]


def bounded_lines(stream: IO[bytes], limit: int) -> Iterator[bytes | None]:
    """Every line of `stream` (newline included), or None for a line whose content exceeds
    `limit` bytes: such a line is read through in SKIP_CHUNK pieces, never held whole."""
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        if len(line) <= limit or line.endswith(b"\n"):
            yield line
            continue
        while (chunk := stream.readline(SKIP_CHUNK)) and not chunk.endswith(b"\n"):
            pass
        yield None
