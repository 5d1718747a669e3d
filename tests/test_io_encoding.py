"""decode_html: BOM, HTTP charset, <meta>, detection, aliasing; plus date normalisation."""

from __future__ import annotations

import pytest

from pipeline.io.dates import iso_utc
from pipeline.io.encoding import (
    charset_from_content_type,
    decode_html,
    html_to_utf8,
    meta_charset,
    normalize_charset,
)

JA = (
    "<html><body><p>日本語のテキストです。ひらがなとカタカナと漢字が入っています。"
    "東京都の天気は晴れです。商品をお選びください。</p></body></html>"
)
JA_NEC = JA.replace("商品", "①番の商品")  # ① exists only in the NEC / JIS X 0213 extensions
FR = (
    "<html><body><p>Café crème brûlée – naïve “quotes” cost €5. "
    "Schöne Grüße aus München, señor.</p></body></html>"
)
RU = "<html><body><p>Съешь же ещё этих мягких французских булок, да выпей чаю.</p></body></html>"


@pytest.mark.parametrize("codec", ["euc_jp", "cp932"])
@pytest.mark.parametrize("declared", [None, "EUC-JP", "x-sjis", "bogus-charset", "utf-8"])
def test_japanese_legacy_encodings(codec: str, declared: str | None) -> None:
    # Right label, the other Japanese label, a bogus label, a wrong UTF-8 label, or none at all:
    # strict decoding rejects wrong labels and detection finds the real encoding.
    body = JA.encode(codec)
    text, used = decode_html(body, declared)
    assert text == JA
    assert used in ("euc_jp", "euc_jis_2004", "cp932")


def test_euc_jp_nec_row13_falls_back_to_extended_codec() -> None:
    # ① is an NEC extension in EUC-JP: plain euc_jp fails, euc_jis_2004 decodes it.
    body = JA_NEC.encode("euc_jis_2004")
    text, used = decode_html(body, "euc-jp")
    assert text == JA_NEC and used == "euc_jp"


@pytest.mark.parametrize("declared", [None, "utf-8", "no-such-charset"])
def test_cp1252_without_or_with_wrong_charset(declared: str | None) -> None:
    text, used = decode_html(FR.encode("cp1252"), declared)
    assert text == FR
    assert used == "cp1252"


def test_iso_8859_1_label_decodes_as_cp1252_like_browsers() -> None:
    # 0x80 (€) and 0x93/0x94 (“ ”) are C1 controls in latin-1 but text in cp1252.
    text, used = decode_html(FR.encode("cp1252"), "ISO-8859-1")
    assert used == "cp1252" and "€5" in text and "“quotes”" in text


def test_cp1252_undefined_bytes_map_to_c1_controls() -> None:
    text, used = decode_html(b"<p>a\x81b\x9dc</p>", "windows-1252")
    assert used == "cp1252" and text == "<p>a\x81b\x9dc</p>"


def test_meta_charset_used_when_http_has_none() -> None:
    page = '<html><head><meta charset="windows-1251"></head>' + RU[6:]
    text, used = decode_html(page.encode("cp1251"), None)
    assert used == "cp1251" and text == page
    page2 = '<meta http-equiv="Content-Type" content="text/html; charset=koi8-r">' + RU
    text, used = decode_html(page2.encode("koi8-r"), None)
    assert used == "koi8-r" and text == page2


def test_http_charset_beats_meta_when_both_decode() -> None:
    page = '<meta charset="koi8-r">' + RU
    text, used = decode_html(page.encode("cp1251"), "windows-1251")
    assert used == "cp1251" and text == page


def test_bom_wins_over_declarations() -> None:
    body = b"\xef\xbb\xbf" + FR.encode("utf-8")
    assert decode_html(body, "iso-8859-1") == (FR, "utf-8")
    body16 = b"\xff\xfe" + FR.encode("utf-16-le")
    assert decode_html(body16, "utf-8") == (FR, "utf-16-le")


def test_valid_utf8_overrules_a_latin1_label() -> None:
    # A very common misconfiguration: server says ISO-8859-1, page is UTF-8.
    assert decode_html(FR.encode("utf-8"), "iso-8859-1") == (FR, "utf-8")


def test_utf8_with_a_stray_byte_keeps_utf8() -> None:
    page = JA.encode("utf-8")
    cut = page.index(b"<p>")
    body = page[:cut] + b"\xff" + page[cut:]
    text, used = decode_html(body, "utf-8")
    assert used == "utf-8"
    assert text.count("\ufffd") == 1 and "ひらがな" in text


def test_undecodable_returns_none() -> None:
    # High bytes in no sensible order: uchardet gives up (UTF-8), nothing decodes cleanly.
    body = bytes(range(0x80, 0x100)) * 50
    assert decode_html(body, None) == (None, "utf-8")
    assert decode_html(body, "euc-jp")[0] is None


def test_empty_and_ascii() -> None:
    assert decode_html(b"", None) == ("", "utf-8")
    assert decode_html(b"<p>plain</p>", None)[0] == "<p>plain</p>"


def test_html_to_utf8_reuses_clean_utf8_and_reencodes_others() -> None:
    body = FR.encode("utf-8")
    out, used = html_to_utf8(body, "utf-8")
    assert out is body and used == "utf-8"
    out, used = html_to_utf8(JA.encode("euc_jp"), "euc-jp")
    assert out == JA.encode("utf-8")


@pytest.mark.parametrize(
    ("label", "codec"),
    [
        ("x-sjis", "cp932"),
        ("Shift_JIS", "cp932"),
        ("EUC-JP", "euc_jp"),
        ("x-euc-jp", "euc_jp"),
        ("iso-8859-1", "cp1252"),
        ("US-ASCII", "cp1252"),
        ("gb2312", "gb18030"),
        ("ks_c_5601-1987", "cp949"),
        ("big5", "big5hkscs"),
        ('"utf8"', "utf-8"),
        ("nonsense", None),
        ("", None),
        (None, None),
    ],
)
def test_normalize_charset(label: str | None, codec: str | None) -> None:
    assert normalize_charset(label) == codec


def test_charset_parsing_helpers() -> None:
    assert charset_from_content_type('text/html; charset="EUC-JP"') == "EUC-JP"
    assert charset_from_content_type("text/html") is None
    assert meta_charset(b"<head><meta charset='Shift_JIS'>") == "cp932"
    assert meta_charset(b'<?xml version="1.0" encoding="ISO-8859-1"?><html>') == "cp1252"
    assert meta_charset(b'<meta charset="utf-16">') == "utf-8"  # WHATWG rule
    assert meta_charset(b"<p>no declaration</p>") is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-05-18T01:58:10Z", "2024-05-18T01:58:10Z"),
        ("2024-05-18T01:58:10.123456Z", "2024-05-18T01:58:10Z"),
        ("2008-10-29T05:21:46-0700", "2008-10-29T12:21:46Z"),
        ("2008-10-294T05:21:46-0700", None),  # ClueWeb09's invalid day
        ("20080430204825", "2008-04-30T20:48:25Z"),
        ("2014-03-25", "2014-03-25T00:00:00Z"),
        ("not a date", None),
        ("", None),
        (None, None),
    ],
)
def test_iso_utc(raw: str | None, expected: str | None) -> None:
    assert iso_utc(raw) == expected
