"""Wide-character pages in a WARC: real pages re-encoded in UTF-16 / UTF-32, labelled by the
HTTP charset. They used to be rejected as `binary_payload` (their ASCII markup is half NUL bytes);
now they decode, whatever byte order a bare `utf-16` label leaves open, and extract to the same
text as the UTF-8 page. A wrong UTF-16 label on a UTF-8 page, and binary data labelled UTF-16,
are not decoded as UTF-16."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from pipeline.io.encoding import decode_html
from tests.faults.helpers import (
    WARC_DIR,
    WGET,
    Member,
    assert_reconciles,
    curate,
    html_pages,
    http_body,
    stats_of,
    texts_by_id,
    warc_members,
    with_http_body,
    write_members,
    write_recipe,
)


@pytest.fixture(scope="module")
def pages(shared_data) -> list[tuple[Member, str]]:
    """Three real non-ASCII pages of the wget crawl, decoded correctly."""
    found = html_pages(WGET, 3)
    assert len(found) == 3
    return found


def run_pages(
    capsys, tmp_path: Path, records: list[bytes], code: int = 0
) -> tuple[dict[str, Any], Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    warc = write_members(tmp_path / "in.warc.gz", records)
    out = tmp_path / "out"
    result = curate(capsys, "run", write_recipe(tmp_path / "r.yaml", [warc], out))
    assert result.code == code, result.err
    stats = stats_of(out)
    assert_reconciles(stats)
    return stats, out


def encoded(pages: list[tuple[Member, str]], codec: str, label: str) -> list[bytes]:
    """Each page re-encoded in `codec` and served as `text/html; charset=<label>`."""
    return [
        with_http_body(m, text.encode(codec), f"text/html; charset={label}", f"<urn:fault:{i}>")
        for i, (m, text) in enumerate(pages)
    ]


@pytest.fixture(scope="module")
def expected(pages, tmp_path_factory) -> dict[str, str]:
    """The extracted texts of the same pages served as UTF-8."""
    from pipeline.cli import main  # capsys is function-scoped: the CLI is called directly

    tmp = tmp_path_factory.mktemp("utf8")
    warc = write_members(tmp / "in.warc.gz", encoded(pages, "utf-8", "utf-8"))
    assert main(["run", str(write_recipe(tmp / "r.yaml", [warc], tmp / "out"))]) == 0
    texts = texts_by_id(tmp / "out")
    assert len(texts) == 3 and all(texts.values())
    return texts


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("codec", "label"),
    [
        ("utf-16-le", "utf-16"),  # the usual case: no BOM, bare label (WHATWG: little-endian)
        ("utf-16-be", "utf-16"),  # big-endian under the bare label: byte order from the bytes
        ("utf-16-be", "UTF-16LE"),  # a wrong byte order in the label
        ("utf-16", "utf-16"),  # with a BOM
        ("utf-32-le", "utf-32"),
        ("utf-32-be", "utf-32"),
    ],
)
def test_wide_character_page_is_decoded(
    capsys, tmp_path, pages, expected, codec: str, label: str
) -> None:
    """Every page is kept and its extracted text equals that of the UTF-8 page."""
    stats, out = run_pages(capsys, tmp_path, encoded(pages, codec, label))
    assert stats["reader"]["documents"] == 3 and stats["reader"]["skipped"] == {}
    assert texts_by_id(out) == expected


@pytest.mark.timeout(60)
@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_japanese_pages_in_utf16(shared_data, codec: str) -> None:
    """Real Japanese pages (most characters without a NUL byte) in UTF-16 under a bare label:
    the markup's NUL bytes still give the byte order."""
    found = html_pages(WARC_DIR / "clueweb09-ja-quirk.warc.gz", 3)
    assert len(found) == 3
    for _, text in found:
        assert decode_html(text.encode(codec), "utf-16") == (text, codec)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("stray", [b"", b"\x00", b"\x00\x00\x00"])
def test_utf8_page_labelled_utf16_is_read_as_utf8(pages, stray: bytes) -> None:
    """A UTF-8 page under a `charset=utf-16` label has (almost) no NUL bytes: the label is wrong
    and is ignored (decoding it as UTF-16 would turn the page into CJK noise)."""
    body = stray + pages[0][1].encode("utf-8")
    got, codec = decode_html(body, "utf-16")
    assert (got, codec) == (body.decode("utf-8"), "utf-8")


@pytest.mark.timeout(120)
def test_binary_body_labelled_utf16_is_still_binary(capsys, tmp_path, shared_data, pages) -> None:
    """A real JPEG without its magic number, labelled UTF-16: its NUL bytes fall at both byte
    positions, so it is not taken for UTF-16 text and stays a `binary_payload` skip."""
    jpeg = next(
        http_body(m)
        for m in warc_members(WARC_DIR / "archive-it-2008.warc.gz")
        if re.search(rb"\r\nContent-Type: image/jpeg", m.record[:3000])
        and b"WARC-Type: response" in m.record[:3000]
    )
    member = pages[0][0]
    record = with_http_body(member, jpeg[4:], "text/html; charset=utf-16", "<urn:fault:jpeg>")
    stats, _ = run_pages(capsys, tmp_path, [record], code=2)  # the input gave no document
    assert stats["reader"]["skipped"] == {"binary_payload": 1}
