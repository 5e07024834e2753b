"""Unit tests of charset choice: byte-order mark, HTTP header, ``<meta>``, UTF-8, then lossless cp1252."""

from __future__ import annotations

from pipeline.html.charset import html_document, meta_charset


def test_charset_order_header_then_meta_then_utf8_then_lossless_cp1252() -> None:
    japanese = '<meta charset="euc-jp"><img src="a.jpg" alt="日本語">'.encode("euc-jp")
    assert meta_charset(japanese) == "euc-jp"
    document, codec = html_document(japanese)
    assert codec == "euc_jp" and "日本語".encode() in document
    # The HTTP header wins over the meta tag.
    shift_jis = '<meta charset="utf-8"><img alt="日本語">'.encode("cp932")
    assert html_document(shift_jis, "Shift_JIS")[0] == '<meta charset="utf-8"><img alt="日本語">'.encode()
    # Valid UTF-8 goes to the parser as it is.
    utf8 = '<img alt="naïve">'.encode()
    assert html_document(utf8) == (utf8, "utf-8")
    # Undeclared, not UTF-8: cp1252, with its undefined bytes kept (0x81 -> U+0081), nothing lost.
    text, codec = html_document(b'<img alt="caf\xe9 \x80 \x81">')
    assert codec == "cp1252" and text == '<img alt="caf\u00e9 \u20ac \x81">'.encode()
    # A declared charset with a few bad bytes is still trusted (replacement characters for the bad bytes).
    text, codec = html_document('<img alt="日本">'.encode("euc-jp") + b"\xff", "euc-jp")
    assert codec == "euc_jp" and "日本".encode() in text
    # A meta http-equiv declaration counts too.
    assert meta_charset(b'<META HTTP-EQUIV="Content-Type" CONTENT="text/html; charset=windows-1251">') == "windows-1251"
