"""Planted cases of the extract stage: URL forms and sources, entities and whitespace in alt texts, page encodings,
and hand-written broken markup."""

from __future__ import annotations

import html
import unicodedata
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from pipeline.core.registry import EXTRACT
from pipeline.sample.alt_texts import normalise_expected_alt
from pipeline.sample.hosts import BLOG, CDN
from pipeline.sample.oracle import kept, rejected
from pipeline.sample.photos import photo_of
from pipeline.sample.pools import ORDINARY_PHOTOS, PAGE_WORDS

if TYPE_CHECKING:
    from pipeline.sample.builder import SampleBuilder

PIXEL_GIF = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"


def plant_source_cases(builder: SampleBuilder) -> None:
    """``data:`` and ``javascript:`` sources and an unparsable URL (rejected at extract), relative URLs, ``<base
    href>``, protocol-relative URLs, an entity in a query string, ``srcset``-only and ``data-src`` lazy images."""
    page = builder.page(f"{BLOG}/2022/07/walks/harbour-walk.html", "en", "A walk by the harbour")
    bad = [
        (PIXEL_GIF, "Small inline icon of a camera", "data_url", "unsupported_url_scheme"),
        ("javascript:void(0)", "Open the photo viewer for this album", "javascript_url", "unsupported_url_scheme"),
        ("http://[broken-ipv6/pic.jpg", "Photo of the harbour with a broken link", "invalid_url", "invalid_url"),
    ]
    for ref, alt, case, reason in bad:
        page.blocks.append(
            builder.img(page, ref, builder.alts.claim(alt), case, rejected(EXTRACT, reason), image_url=ref)
        )
    forms = [
        ("../../../media/walks/{name}", "relative_url_dot_dot"),
        ("/media/walks/{name}", "relative_url_root"),
        ("photos/{name}", "relative_url_same_folder"),
        ("//www.photo-blog.example.com/media/walks/cdn/{name}", "protocol_relative_url"),
    ]
    for index, (template, case) in enumerate(forms):
        photo = ["motorcycle_right", "coins", "china", "flower"][index]
        name = f"{photo.replace('_', '-')}-{case.replace('_', '-')}.jpg"
        url = urljoin(page.url, template.format(name=name))
        builder.variant(url, photo, case)
        page.blocks.append(
            builder.img(page, template.format(name=name), builder.alts.take(ORDINARY_PHOTOS[photo]), case)
        )
    url = f"{BLOG}/media/thumb.php?id=17&w=480"
    builder.variant(url, "camera", "url_with_entity_in_query")
    ref = "/media/thumb.php?id=17&amp;w=480"
    page.blocks.append(builder.img(page, ref, builder.alts.take("camera"), "url_with_entity_in_query"))

    # <base href> on another host, then a relative one; root-relative and absolute references ignore the path.
    page = builder.page(
        "https://travel.example.com/2023/space/astronauts.html",
        "en",
        "Astronauts",
        base_href="https://cdn.example.net/albums/space/",
    )
    builder.variant("https://cdn.example.net/albums/space/astronaut-portrait.jpg", "astronaut", "base_href_absolute")
    page.blocks.append(
        builder.img(page, "astronaut-portrait.jpg", builder.alts.take("astronaut"), "base_href_absolute")
    )
    page = builder.page(
        "https://news.example.net/science/2023/deep-field.html", "en", "The deep field", base_href="/static/v2/"
    )
    builder.variant("https://news.example.net/static/v2/img/hubble-deep-field.jpg", "hubble", "base_href_relative")
    page.blocks.append(
        builder.img(page, "img/hubble-deep-field.jpg", builder.alts.take("hubble"), "base_href_relative")
    )
    builder.variant("https://news.example.net/assets/hubble-crop.jpg", "hubble", "base_href_root_relative")
    page.blocks.append(
        builder.img(page, "/assets/hubble-crop.jpg", builder.alts.take("hubble"), "base_href_root_relative")
    )

    page = builder.page(f"{BLOG}/2022/09/lazy-gallery.html", "en", "Lazy gallery")
    url = builder.variant(f"{BLOG}/media/lazy/tabby-cat.jpg", "chelsea", "data_src_lazy")
    page.blocks.append(
        builder.img(
            page,
            "/media/lazy/tabby-cat.jpg",
            builder.alts.take("chelsea"),
            "data_src_lazy",
            attribute="data-src",
            extra=f' src="{PIXEL_GIF}" class="lazyload"',
        )
    )
    url = builder.variant(f"{BLOG}/media/lazy/dahlia-800.jpg", "flower", "srcset_only_width_descriptor")
    page.blocks.append(
        builder.img(
            page,
            "/media/lazy/dahlia-800.jpg 800w",
            builder.alts.take("flower"),
            "srcset_only_width_descriptor",
            attribute="srcset",
            extra=' sizes="100vw"',
            image_url=url,
        )
    )
    # Several candidates: the extractor takes the largest (pipeline/html_images.py); only that one is archived.
    url = builder.variant(f"{BLOG}/media/lazy/astronaut-960.jpg", "astronaut", "srcset_largest_candidate")
    srcset = (
        "/media/lazy/astronaut-480.jpg 480w, /media/lazy/astronaut-960.jpg 960w, /media/lazy/astronaut-720.jpg 720w"
    )
    page.blocks.append(
        builder.img(
            page, srcset, builder.alts.take("astronaut"), "srcset_largest_candidate", attribute="srcset", image_url=url
        )
    )
    url = builder.variant(f"{CDN}/lazy/coins-2x.jpg", "coins", "srcset_only_density_descriptor")
    page.blocks.append(
        builder.img(
            page,
            "//cdn.example.net/lazy/coins-2x.jpg 2x",
            builder.alts.take("coins"),
            "srcset_only_density_descriptor",
            attribute="srcset",
            image_url=url,
        )
    )
    url = builder.variant(f"{BLOG}/media/lazy/moon.jpg", "moon", "picture_element")
    tag = builder.img(page, "/media/lazy/moon.jpg", builder.alts.take("moon"), "picture_element", figure=False)
    page.blocks.append(f'<picture><source srcset="/media/lazy/moon.webp" type="image/webp">{tag}</picture>')


def plant_text_encoding_cases(builder: SampleBuilder) -> None:
    """Entities (named, decimal, hex, ``&nbsp;``, escaped twice), whitespace to collapse, a decomposed (NFD) alt."""
    page = builder.page(f"{BLOG}/2023/02/notes-with-entities.html", "en", "Notes with entities")
    cases = [
        ("chelsea", "Chelsea the cat &amp; her green eyes", "entity_amp"),
        ("flower", "Orange dahlia in the jardin d&#233;coratif", "entity_decimal"),
        ("hubble", "Hubble deep field &#x2014; thousands of galaxies", "entity_hex"),
        ("china", "The &quot;Tower of Buddhist Incense&quot; in Beijing", "entity_quot"),
        ("motorcycle_left", "Red&nbsp;motorcycle&nbsp;parked in a&nbsp;garage", "entity_nbsp"),
        ("astronaut", "Portrait d&amp;eacute;taill&amp;eacute; d'une astronaute", "entity_escaped_twice"),
        ("gravel", "  Grey gravel\n\tstones   photographed from above ", "alt_whitespace_collapsed"),
        ("flower", unicodedata.normalize("NFD", "Dahlia orange photographié en été"), "alt_nfd_normalised"),
    ]
    for photo, raw, case in cases:
        url = builder.fresh_variant(BLOG, "media/notes", photo, case)
        alt = builder.alts.claim(normalise_expected_alt(html.unescape(raw)))
        page.blocks.append(builder.img(page, urlsplit(url).path, alt, case, alt_raw=raw))


def plant_charset_cases(builder: SampleBuilder) -> None:
    """Pages that are not UTF-8: Shift_JIS declared only by the HTTP header, EUC-JP only by ``<meta http-equiv>``,
    windows-1252 only by ``<meta charset>``; and a gzip Content-Encoding page."""
    specs = [
        (
            "shift_jis",
            "Shift_JIS",
            None,
            None,
            "shift_jis_http_header",
            "ja",
            "https://jp.shashin.example.com/sjis/gallery.html",
        ),
        (
            "euc_jp",
            None,
            None,
            '<meta http-equiv="Content-Type" content="text/html; charset=EUC-JP">',
            "euc_jp_meta_http_equiv",
            "ja",
            "https://jp.shashin.example.com/eucjp/index.html",
        ),
    ]
    for encoding, header, meta, head, case, lang, url in specs:
        page = builder.page(
            url,
            lang,
            "写真ギャラリー",
            encoding=encoding,
            header_charset=header,
            meta_charset=meta,
            head=[head] if head else [],
            case=case,
        )
        page.blocks.append(f"<p>{PAGE_WORDS['ja']}</p>")
        for pool in ("chelsea", "china", "flower"):
            alt = builder.alts.take(pool, "ja", accept=lambda text, encoding=encoding: _encodable(text, encoding))
            image = builder.fresh_variant("https://jp.shashin.example.com", "img", photo_of(pool), case)
            page.blocks.append(builder.img(page, urlsplit(image).path, alt, case))

    page = builder.page(
        "https://fr.voyages.example.org/archives/vieux-site.html",
        "fr",
        "Archives du vieux site",
        encoding="windows-1252",
        header_charset=None,
        meta_charset="windows-1252",
        case="windows_1252_meta_charset",
    )
    for photo, alt in (
        ("chelsea", "Chat tigré “Chelsea” aux yeux verts"),
        ("coins", "Pièces grecques antiques – collection d’un musée"),
        ("motorcycle_left", "Moto rouge garée dans l’atelier à côté des cartons"),
    ):
        image = builder.fresh_variant("https://fr.voyages.example.org", "images", photo, "windows_1252_meta_charset")
        page.blocks.append(builder.img(page, image, builder.alts.claim(alt), "windows_1252_meta_charset"))

    page = builder.page(
        "https://news.example.net/compressed/space-week.html",
        "en",
        "Space week",
        content_encoding="gzip",
        case="gzip_content_encoding",
    )
    for pool in ("astronaut", "hubble"):
        page.blocks.append(builder.ordinary_figure(page, "en", "gzip_content_encoding", pool=pool))


def plant_markup_cases(builder: SampleBuilder) -> None:
    """An old hand-written page: upper-case tags, unquoted and single-quoted attributes, a duplicated alt (the
    first wins), stray ``<``, unclosed and misnested tags, images in a comment and a script (not elements),
    alt-less, empty and blank alts, and a tag cut off by the end of the file (dropped)."""
    url = f"{BLOG}/old-site/guestbook.html"
    page = builder.page(url, None, "Old guestbook", case="broken_markup")
    refs = {
        photo: builder.fresh_variant(BLOG, "old-site/pics", photo, "broken_markup")
        for photo in ("chelsea", "moon", "coins", "flower", "china")
    }
    path = {photo: urlsplit(ref).path for photo, ref in refs.items()}
    alt = {photo: builder.alts.take(ORDINARY_PHOTOS[photo]) for photo in refs}
    builder.alts.claim("second alt attribute is ignored")
    lines = [
        "<HTML><HEAD><TITLE>Old guestbook</TITLE>",
        "<BODY BGCOLOR=#ffffff><CENTER><FONT FACE=Arial SIZE=2>",
        "<P>Welcome to my homepage! Prices < 20 euros & more",
        builder.img(page, path["chelsea"], alt["chelsea"], "uppercase_unquoted_attributes", figure=False)
        .replace(f'src="{path["chelsea"]}"', f"SRC={path['chelsea']}")
        .replace("<img ", "<IMG ")
        .replace(" alt=", " ALT="),
        "<p>An unclosed paragraph <b><i>with misnested tags</b></i>",
        f"<img alt='{html.escape(alt['moon'], quote=True)}' src='{path['moon']}'>",
        "<table><tr><td>first cell<td>"
        + builder.img(page, path["coins"], alt["coins"], "image_in_unclosed_table_cell", figure=False)
        + "</table>",
        builder.img(page, path["flower"], alt["flower"], "duplicate_alt_attribute_first_wins", figure=False).replace(
            ">", ' alt="second alt attribute is ignored">'
        ),
        builder.img(page, path["china"], alt["china"], "xhtml_self_closing", figure=False).replace(">", " />"),
        builder.not_a_candidate(page, "img_without_alt", "<img src=/old-site/pics/spacer.gif>"),
        builder.not_a_candidate(page, "empty_alt", '<img src="/old-site/pics/divider.gif" alt="">'),
        builder.not_a_candidate(page, "blank_alt", '<img src="/old-site/pics/blank.gif" alt=" &nbsp; ">'),
        builder.not_a_candidate(
            page, "img_in_comment", '<!-- <img src="/old-site/pics/boat.jpg" alt="A boat on the lake"> -->'
        ),
        builder.not_a_candidate(
            page,
            "img_in_script",
            '<script>document.write(\'<img src="/counter.gif" alt="visitor counter">\');</script>',
        ),
        "</FONT>",
        builder.not_a_candidate(
            page,
            "tag_cut_off_at_end_of_file",
            '<p>The page ends here <img src="/old-site/pics/last.jpg" alt="cut off at the end of',
        ),
    ]
    # The single-quoted <img> was written by hand above: register it.
    builder.expect(page, refs["moon"], alt["moon"], "single_quoted_attributes", kept())
    page.raw_markup = "\n".join(lines)


def _encodable(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True
