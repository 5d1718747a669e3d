"""Hostile WARC input, end to end through `curate run`: every fault is built from a real crawl file
and ends as a counted, reasoned skip (or a recovered document), never as a crashed run."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import brotli
import pytest

from pipeline.config import recipe_from_dict
from pipeline.runner.run import run_recipe
from tests.faults.helpers import (
    META_CHARSET,
    WARC_DIR,
    WGET,
    Member,
    assert_reconciles,
    curate,
    gz,
    html_pages,
    html_responses,
    http_body,
    kept_ids,
    make_record,
    rejected,
    split_record,
    stats_of,
    texts_by_id,
    warc_members,
    with_content_length,
    with_http_body,
    write_members,
    write_recipe,
)

CLEAN_SKIPS = {"warcinfo": 1, "request": 22, "metadata": 1, "resource": 2}


@pytest.fixture(scope="module")
def members(shared_data) -> list[Member]:
    return warc_members(WGET)


@pytest.fixture(scope="module")
def clean(shared_data, tmp_path_factory) -> dict[str, Any]:
    """The untouched file through the same recipe: what every faulty run is compared with."""
    tmp = tmp_path_factory.mktemp("clean")
    out = tmp / "out"
    recipe = write_recipe(tmp / "r.yaml", [WGET], out)
    run_recipe(recipe_from_dict(json.loads(recipe.read_text())))
    stats = stats_of(out)
    assert stats["reader"]["documents"] == 22 and stats["reader"]["skipped"] == CLEAN_SKIPS
    return {"ids": kept_ids(out), "texts": texts_by_id(out)}


def run_file(capsys, tmp_path: Path, path: Path, **input_options: Any):
    """`curate run` over one file; returns (cli result, stats, output directory)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", [path], out, input_options=input_options)
    result = curate(capsys, "run", recipe)
    assert result.code == 0, result.err
    stats = stats_of(out)
    assert_reconciles(stats)
    return result, stats, out


def rid(member: Member) -> str:
    return member.header("WARC-Record-ID") or ""


# --- truncated gzip members ---------------------------------------------------------------


def test_gzip_member_cut_mid_record_then_more_members(capsys, tmp_path, members, clean) -> None:
    """A member losing its second half mid-file: that record is one counted `corrupt_record`,
    every record after it is recovered."""
    k = html_responses(members)[3]
    broken = list(members)
    broken[k] = members[k].raw[: len(members[k].raw) // 2]
    path = write_members(tmp_path / "cut.warc.gz", broken)
    result, stats, out = run_file(capsys, tmp_path, path)
    assert stats["reader"]["skipped"] == {**CLEAN_SKIPS, "corrupt_record": 1}
    assert stats["reader"]["documents"] == 21
    assert kept_ids(out) == [i for i in clean["ids"] if i != rid(members[k])]
    assert "stream broken after 8 records" in stats["reader"]["errors"][0]
    assert "curate: warning: 1 input problem" in result.err and "stream broken" in result.err


def test_file_ending_mid_record(capsys, tmp_path, members, clean) -> None:
    """A download cut inside a record: the records before it are read, it is `truncated`."""
    k = html_responses(members)[3]
    raw = b"".join(m.raw for m in members[:k]) + members[k].raw[: len(members[k].raw) // 2]
    path = tmp_path / "cut.warc.gz"
    path.write_bytes(raw)
    _, stats, out = run_file(capsys, tmp_path, path)
    assert stats["reader"]["skipped"] == {"warcinfo": 1, "request": 4, "truncated": 1}
    assert stats["reader"]["documents"] == 3
    assert kept_ids(out) == sorted({rid(members[i]) for i in html_responses(members)[:3]})
    assert "cut short" in stats["reader"]["errors"][0]


# --- corrupted WARC headers -----------------------------------------------------------------


def _flip_header_bytes(record: bytes) -> bytes:
    return record[:5] + bytes(b ^ 0xFF for b in record[5:60]) + record[60:]


@pytest.mark.parametrize(
    ("corrupt", "reason"),
    [
        (lambda r: r.replace(b"WARC/1.0", b"WXRC/1.0", 1), "corrupt_record"),
        (_flip_header_bytes, "corrupt_record"),
        (lambda r: r.replace(b"WARC-Type: response", b"WARC-Type response", 1), "unknown_type"),
    ],
    ids=["version-line", "flipped-bytes", "no-colon"],
)
def test_corrupted_warc_header(capsys, tmp_path, members, clean, corrupt, reason) -> None:
    """One record's header mangled: that record is counted under `reason`, nothing else lost."""
    k = html_responses(members)[3]
    broken: list[Member | bytes] = list(members)
    broken[k] = gz(corrupt(members[k].record))
    path = write_members(tmp_path / "hdr.warc.gz", broken)
    _, stats, out = run_file(capsys, tmp_path, path)
    assert stats["reader"]["skipped"] == {**CLEAN_SKIPS, reason: 1}
    assert kept_ids(out) == [i for i in clean["ids"] if i != rid(members[k])]


# --- lying Content-Length -------------------------------------------------------------------


@pytest.mark.parametrize("delta", [500, 1_000_000], ids=["runs-into-next", "runs-to-eof"])
def test_content_length_too_long_is_cut_at_the_next_record(
    capsys, tmp_path, members, clean, delta
) -> None:
    """A Content-Length running past the record: the block ends where the next record starts,
    the next WARC header never leaks into the text, and no later record is swallowed."""
    k = html_responses(members)[3]
    length = len(split_record(members[k].record)[1])
    broken: list[Member | bytes] = list(members)
    broken[k] = with_content_length(members[k], length + delta)
    path = write_members(tmp_path / "cl.warc.gz", broken)
    result, stats, out = run_file(capsys, tmp_path, path)
    assert stats["reader"]["skipped"] == CLEAN_SKIPS
    assert stats["reader"]["documents"] == 22
    assert texts_by_id(out) == clean["texts"]
    assert "runs into the next record" in stats["reader"]["errors"][0]
    assert "Content-Length" in result.err


def test_content_length_too_short(capsys, tmp_path, members, clean) -> None:
    """A Content-Length 500 bytes short: the record keeps its first part, the rest of it is
    one counted `corrupt_record` region, and reading resumes at the next record."""
    k = html_responses(members)[3]
    length = len(split_record(members[k].record)[1])
    broken: list[Member | bytes] = list(members)
    broken[k] = with_content_length(members[k], length - 500)
    path = write_members(tmp_path / "cl.warc.gz", broken)
    _, stats, out = run_file(capsys, tmp_path, path)
    assert stats["reader"]["skipped"] == {**CLEAN_SKIPS, "corrupt_record": 1}
    assert stats["reader"]["documents"] == 22
    assert kept_ids(out) == clean["ids"]


def test_content_length_over_the_size_limit_does_not_swallow_the_file(
    capsys, tmp_path, members, clean
) -> None:
    """A Content-Length of 1 GB on a small record: `too_large`, and the records after it read."""
    k = html_responses(members)[3]
    broken: list[Member | bytes] = list(members)
    broken[k] = with_content_length(members[k], 10**9)
    path = write_members(tmp_path / "cl.warc.gz", broken)
    _, stats, out = run_file(capsys, tmp_path, path)
    assert stats["reader"]["skipped"] == {**CLEAN_SKIPS, "too_large": 1}
    assert kept_ids(out) == [i for i in clean["ids"] if i != rid(members[k])]


@pytest.mark.parametrize("value", [b"-5", b"abc", b"%d" % 2**64])
@pytest.mark.parametrize("layout", ["gzip", "plain", "last-record"])
def test_content_length_that_is_not_a_number_is_counted_once(
    capsys, tmp_path, members, clean, value, layout
) -> None:
    """Content-Length `-5`, `abc` or 2^64 (fastwarc reads 0): one `corrupt_record` for that
    record and every other record read (it was counted twice: 49 records reported for 48)."""
    k = html_responses(members)[-1 if layout == "last-record" else 3]
    head, block = split_record(members[k].record)
    head = re.sub(rb"Content-Length:\s*\d+", b"Content-Length: " + value, head, count=1)
    record = head + b"\r\n\r\n" + block + b"\r\n\r\n"
    broken: list[Member | bytes] = list(members)
    broken[k] = gz(record)
    if layout == "plain":  # an uncompressed WARC: records back to back
        path = tmp_path / "cl.warc"
        path.write_bytes(b"".join(record if i == k else m.record for i, m in enumerate(members)))
    else:
        path = write_members(tmp_path / "cl.warc.gz", broken)
    _, stats, out = run_file(capsys, tmp_path, path)
    assert stats["reader"]["records"] == len(members) == 48
    assert stats["reader"]["skipped"] == {**CLEAN_SKIPS, "corrupt_record": 1}
    assert kept_ids(out) == [i for i in clean["ids"] if i != rid(members[k])]
    (error,) = stats["reader"]["errors"]
    assert error.startswith(f"{path}: record at byte ")
    assert error.endswith(f"Content-Length {value.decode()!r} is not a byte count")


# --- payloads ----------------------------------------------------------------------------------


def _binary_bodies(shared_data: Path) -> list[bytes]:
    """Real binary HTTP bodies (JPEG, GIF, PNG, Flash) from the Archive-It crawl."""
    found: dict[bytes, bytes] = {}
    for m in warc_members(shared_data / "warc" / "archive-it-2008.warc.gz"):
        head = m.record[:3000]
        ct = re.search(rb"\r\nContent-Type: (image/\w+|application/x-shockwave-flash)", head)
        if b"WARC-Type: response" in head and ct and ct.group(1) not in found:
            found[ct.group(1)] = http_body(m)
    assert len(found) == 4, found.keys()
    return list(found.values())


def test_binary_payloads_labelled_text_html(capsys, tmp_path, shared_data, members, clean) -> None:
    """Images and Flash served as text/html: each is a `binary_payload` skip, never a document."""
    targets = html_responses(members)[:4]
    broken: list[Member | bytes] = list(members)
    for k, body in zip(targets, _binary_bodies(shared_data), strict=True):
        broken[k] = with_http_body(members[k], body, "text/html; charset=utf-8")
    path = write_members(tmp_path / "bin.warc.gz", broken)
    _, stats, out = run_file(capsys, tmp_path, path)
    assert stats["reader"]["skipped"] == {**CLEAN_SKIPS, "binary_payload": 4}
    lost = {rid(members[k]) for k in targets}
    assert kept_ids(out) == [i for i in clean["ids"] if i not in lost]


def _fifty_mb_page(members: list[Member]) -> bytes:
    """A 50 MB HTML page: a real page's body with its paragraphs repeated."""
    page = http_body(members[html_responses(members)[0]])
    cut = page.lower().rindex(b"</body>")
    filler = page[: min(cut, 30_000)]
    repeats = 50 * 2**20 // len(filler) + 1
    return page[:cut] + filler * repeats + page[cut:]


@pytest.mark.slow
@pytest.mark.parametrize("limit", [None, 64 * 2**20], ids=["reader-limit", "extract-limit"])
def test_fifty_megabyte_page(capsys, tmp_path, members, clean, limit) -> None:
    """A 50 MB page is refused by the reader's size limit (`too_large`), or when the reader's
    limit is raised, by the extractor's (`extract_too_large`) without parsing it."""
    k = html_responses(members)[0]
    broken: list[Member | bytes] = list(members)
    broken[k] = with_http_body(members[k], _fifty_mb_page(members))
    path = write_members(tmp_path / "big.warc.gz", broken)
    options = {} if limit is None else {"max_record_bytes": limit}
    _, stats, out = run_file(capsys, tmp_path, path, **options)
    extract = stats["stages"][0]
    if limit is None:
        assert stats["reader"]["skipped"] == {**CLEAN_SKIPS, "too_large": 1}
        assert extract["docs_in"] == 21
    else:
        assert stats["reader"]["skipped"] == CLEAN_SKIPS
        assert extract["removed_by_reason"].get("extract_too_large") == 1
    assert kept_ids(out) == [i for i in clean["ids"] if i != rid(members[k])]


def test_empty_and_whitespace_only_bodies(capsys, tmp_path, members, clean) -> None:
    """An empty body and a whitespace-only body are `empty_body` skips; markup with no text is
    read as a document and rejected by extraction as `extract_empty`."""
    targets = html_responses(members)[:3]
    bodies = [b"", b" \r\n\t  \r\n ", b"<html><head><title></title></head><body>\n  </body></html>"]
    broken: list[Member | bytes] = list(members)
    for k, body in zip(targets, bodies, strict=True):
        broken[k] = with_http_body(members[k], body)
    path = write_members(tmp_path / "empty.warc.gz", broken)
    _, stats, out = run_file(capsys, tmp_path, path)
    assert stats["reader"]["skipped"] == {**CLEAN_SKIPS, "empty_body": 2}
    assert stats["stages"][0]["removed_by_reason"]["extract_empty"] >= 1
    gone = rejected(out, "extract")
    assert rid(members[targets[2]]) in gone.column("id").to_pylist()
    lost = {rid(members[k]) for k in targets}
    assert kept_ids(out) == [i for i in clean["ids"] if i not in lost]


# --- encodings -------------------------------------------------------------------------------

CASES = [
    # (source file, codec the page is re-encoded in, Content-Type charset label or None)
    ("clueweb09-ja-quirk.warc.gz", "euc_jp", None),
    ("clueweb09-ja-quirk.warc.gz", "euc_jp", "iso-8859-1"),
    ("clueweb09-ja-quirk.warc.gz", "euc_jp", "utf-8"),
    ("clueweb09-ja-quirk.warc.gz", "cp932", None),
    ("clueweb09-ja-quirk.warc.gz", "cp932", "euc-jp"),
    ("clueweb09-ja-quirk.warc.gz", "cp932", "windows-1252"),
    ("wget-2024-sample-0000.warc.gz", "cp1252", None),
    ("wget-2024-sample-0000.warc.gz", "cp1252", "utf-8"),
    ("wget-2024-sample-0000.warc.gz", "cp1252", "us-ascii"),
]


@pytest.mark.parametrize(("name", "codec", "label"), CASES)
def test_legacy_encoding_with_wrong_or_missing_charset(
    capsys, tmp_path, shared_data, name, codec, label
) -> None:
    """Real pages re-encoded in EUC-JP, Shift_JIS or cp1252, their <meta charset> removed and the
    HTTP charset missing or wrong: the extracted text equals that of the correctly labelled UTF-8
    page."""
    pages = html_pages(WARC_DIR / name, 3)
    good: list[Member | bytes] = []
    bad: list[Member | bytes] = []
    for i, (member, text) in enumerate(pages):
        html = META_CHARSET.sub(b"", text.encode("utf-8")).decode("utf-8")
        body = html.encode(codec, errors="ignore")
        html = body.decode(codec)  # what survives the round trip is the expected page
        ct = "text/html" + (f"; charset={label}" if label else "")
        bad.append(with_http_body(member, body, ct, record_id=f"<urn:fault:{i}>"))
        good.append(
            with_http_body(
                member, html.encode(), "text/html; charset=utf-8", record_id=f"<urn:fault:{i}>"
            )
        )
    expected = run_file(capsys, tmp_path / "good", write_members(tmp_path / "good.warc.gz", good))
    got = run_file(capsys, tmp_path / "bad", write_members(tmp_path / "bad.warc.gz", bad))
    assert got[1]["reader"]["documents"] == len(pages)
    want = texts_by_id(expected[2])
    assert want and texts_by_id(got[2]) == want
    assert not any("\ufffd" in t for t in want.values())


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        # A server that compressed the page but sent no Content-Encoding: binary noise.
        (lambda page, jpeg: brotli.compress(page), "binary_payload"),
        # No magic number, no NUL byte, no charset that decodes it.
        (lambda page, jpeg: jpeg[4:].replace(b"\x00", b""), "undecodable"),
    ],
    ids=["compressed-unlabelled", "no-magic-no-nul"],
)
def test_binary_body_without_a_magic_number(
    capsys, tmp_path, shared_data, members, clean, make, reason
) -> None:
    """Binary bodies that no magic number gives away, labelled text/html: still counted under
    a reason, never kept as garbage text."""
    k = html_responses(members)[1]
    body = make(http_body(members[k]), _binary_bodies(shared_data)[0])
    broken: list[Member | bytes] = list(members)
    broken[k] = with_http_body(members[k], body, "text/html")
    path = write_members(tmp_path / "u.warc.gz", broken)
    _, stats, out = run_file(capsys, tmp_path, path)
    assert stats["reader"]["skipped"] == {**CLEAN_SKIPS, reason: 1}
    assert kept_ids(out) == [i for i in clean["ids"] if i != rid(members[k])]


# --- the extractor's time limit ----------------------------------------------------------------


def runaway_page(real_page: bytes, depth: int = 80_000) -> bytes:
    """A real page wrapped in `depth` nested divs. resiliparse's main-content pass is quadratic in
    the nesting depth: measured 2.4 s at 5,000, 8.9 s at 10,000, 33 s at 20,000, so about nine
    minutes at 80,000 (a 1 MB page, far below every size limit)."""
    return b"<html><body>" + b"<div>x " * depth + real_page + b"</div>" * depth + b"</body></html>"


@pytest.mark.slow
def test_page_that_would_run_for_minutes_is_cut_by_the_time_limit(
    capsys, tmp_path, members, clean
) -> None:
    """The per-document limit kills the extractor on the runaway page (`extract_timeout`) and
    every other page is still extracted."""
    k = html_responses(members)[2]
    broken: list[Member | bytes] = list(members)
    broken[k] = with_http_body(members[k], runaway_page(http_body(members[k])))
    path = write_members(tmp_path / "slow.warc.gz", broken)
    out = tmp_path / "out"
    stage = {"stage": "extract", "backend": "resiliparse", "timeout_s": 2.0}
    recipe = write_recipe(tmp_path / "r.yaml", [path], out, [stage])
    result = curate(capsys, "run", recipe)
    assert result.code == 0, result.err
    stats = stats_of(out)
    assert_reconciles(stats)
    assert stats["stages"][0]["removed_by_reason"]["extract_timeout"] == 1
    assert kept_ids(out) == [i for i in clean["ids"] if i != rid(members[k])]


def test_clean_records_unaffected_by_a_neighbouring_fault(capsys, tmp_path, members) -> None:
    """Two faults in one file (a cut member and a lying length) stay independent."""
    resp = html_responses(members)
    broken: list[Member | bytes] = list(members)
    broken[resp[2]] = members[resp[2]].raw[:200]
    head, block = split_record(members[resp[5]].record)
    broken[resp[5]] = gz(make_record(head, block, len(block) + 300))
    path = write_members(tmp_path / "two.warc.gz", broken)
    _, stats, _ = run_file(capsys, tmp_path, path)
    assert stats["reader"]["skipped"] == {**CLEAN_SKIPS, "corrupt_record": 1}
    assert stats["reader"]["documents"] == 21
