/*
 * pipeline.html._tagscan: the compiled twin of pipeline.html.scan.scan_page_reference.
 *
 * It finds where every <img ...> tag of an HTML page starts and ends, skipping what a browser would not parse as
 * elements (comments; script, style, textarea, title, template, iframe, xmp, noembed, noframes, plaintext text),
 * which of those tags mention "alt", and the first <html ...> tag and first <base ...> tag mentioning "href" that
 * are elements (outside comments, raw text, <img> tags and other tags' attribute values). The rules are exactly
 * those of the Python reference (a regex scan over the lower-cased page); tests/pipeline/html/test_tagscan.py checks
 * the two agree on real pages and on generated hostile markup. It exists because that scan was the largest single cost of the extract
 * stage: this one reads the page once, case-insensitively, with memchr between tags, and without the GIL.
 *
 * Everything is bounded by the buffer length; no input can make it read outside the page.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HEAD_TAG_BYTES 100000

typedef struct {
    Py_ssize_t *items; /* triples: ordinal, start, end */
    Py_ssize_t length;
    Py_ssize_t capacity;
} Triples;

typedef struct {
    Py_ssize_t img_count;
    Triples with_alt;
    Py_ssize_t html_start, html_end, base_start, base_end;
    int html_seen; /* the first <html> element was met (html_start stays -1 if it never closes) */
    int out_of_memory;
} ScanResult;

/* Python's bytes-regex \s: space, \t, \n, \r, \f, \v. */
static inline int re_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

static inline unsigned char lower(unsigned char c) { return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c; }

static inline int is_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* Whether s[pos:] starts with the lower-case ASCII word, ignoring ASCII case. */
static inline int starts_with(const unsigned char *s, Py_ssize_t n, Py_ssize_t pos, const char *word, Py_ssize_t len) {
    if (pos < 0 || pos + len > n) return 0;
    for (Py_ssize_t k = 0; k < len; k++) {
        if (lower(s[pos + k]) != (unsigned char)word[k]) return 0;
    }
    return 1;
}

/* The tag's attributes up to its closing '>' (the reference's _ATTRIBUTES pattern, possessive as it is):
 * returns the index after '>', or -1 if the tag does not close before end. */
static Py_ssize_t attributes_end(const unsigned char *s, Py_ssize_t pos, Py_ssize_t end) {
    while (pos < end) {
        unsigned char c = s[pos];
        if (re_space(c) || c == '/') {
            while (pos < end && (re_space(s[pos]) || s[pos] == '/')) pos++;
            continue;
        }
        if (c == '>') return pos + 1;
        if (c == '=') return -1;
        /* An attribute name, then maybe "= value". */
        pos++;
        while (pos < end) {
            c = s[pos];
            if (re_space(c) || c == '/' || c == '>' || c == '=') break;
            pos++;
        }
        Py_ssize_t p = pos;
        while (p < end && re_space(s[p])) p++;
        if (p < end && s[p] == '=') {
            p++;
            while (p < end && re_space(s[p])) p++;
            if (p < end && (s[p] == '"' || s[p] == '\'')) {
                const unsigned char *close = memchr(s + p + 1, s[p], (size_t)(end - p - 1));
                if (close != NULL) {
                    pos = (close - s) + 1;
                    continue;
                }
            }
            while (p < end && !re_space(s[p]) && s[p] != '>') p++;
            pos = p;
        }
    }
    return -1;
}

/* First index >= from of a case-insensitive "</name" followed by \s, '/' or '>'; returns the index after it. */
static Py_ssize_t raw_text_end(const unsigned char *s, Py_ssize_t n, Py_ssize_t from, const char *name, Py_ssize_t len) {
    Py_ssize_t pos = from;
    while (pos < n) {
        const unsigned char *lt = memchr(s + pos, '<', (size_t)(n - pos));
        if (lt == NULL) return -1;
        Py_ssize_t i = lt - s;
        if (i + 2 + len < n && s[i + 1] == '/' && starts_with(s, n, i + 2, name, len)) {
            unsigned char c = s[i + 2 + len];
            if (re_space(c) || c == '/' || c == '>') return i + 3 + len;
        }
        pos = i + 1;
    }
    return -1;
}

/* Case-insensitive search for "alt" in s[start:end]. */
static int mentions_alt(const unsigned char *s, Py_ssize_t start, Py_ssize_t end) {
    for (Py_ssize_t i = start; i + 3 <= end; i++) {
        if (lower(s[i]) == 'a' && lower(s[i + 1]) == 'l' && lower(s[i + 2]) == 't') return 1;
    }
    return 0;
}

/* Case-insensitive search for "href" in s[start:end]. */
static int mentions_href(const unsigned char *s, Py_ssize_t start, Py_ssize_t end) {
    for (Py_ssize_t i = start; i + 4 <= end; i++) {
        if (lower(s[i]) == 'h' && starts_with(s, end, i, "href", 4)) return 1;
    }
    return 0;
}

/* Whether the '<' at i sits inside another tag opened since position (an attribute value such as
 * title="<img ...>"): the last '<' before it opens a tag and no '>' closed that tag yet. */
static int inside_a_tag(const unsigned char *s, Py_ssize_t n, Py_ssize_t position, Py_ssize_t i) {
    for (Py_ssize_t k = i - 1; k >= position; k--) {
        if (s[k] == '<') return k + 1 < n && is_alpha(s[k + 1]) && memchr(s + k, '>', (size_t)(i - k)) == NULL;
    }
    return 0;
}

/* Whether s[i] == '<' starts "<name" followed by \s, '/' or '>'. */
static inline int opens(const unsigned char *s, Py_ssize_t n, Py_ssize_t i, const char *name, Py_ssize_t len) {
    if (i + 1 + len >= n || !starts_with(s, n, i + 1, name, len)) return 0;
    unsigned char c = s[i + 1 + len];
    return re_space(c) || c == '/' || c == '>';
}

/* Records the '<' at i, which the scan meets outside comments, raw text and <img> tags (position: where the last
 * of those ended), if it opens the page's first <html> element or first <base> element mentioning "href": the
 * tags whose attributes the parser uses. A tag must close within MAX_HEAD_TAG_BYTES; a first <html> that does
 * not leaves the page without one. */
static void note_head(const unsigned char *s, Py_ssize_t n, Py_ssize_t i, Py_ssize_t position, ScanResult *r) {
    int html = !r->html_seen && opens(s, n, i, "html", 4);
    if (!html && (r->base_start >= 0 || !opens(s, n, i, "base", 4))) return;
    if (inside_a_tag(s, n, position, i)) return;
    Py_ssize_t limit = i + MAX_HEAD_TAG_BYTES < n ? i + MAX_HEAD_TAG_BYTES : n;
    Py_ssize_t end = attributes_end(s, i + 5, limit); /* after "<html" / "<base" */
    if (html) {
        r->html_seen = 1;
        if (end >= 0) {
            r->html_start = i;
            r->html_end = end;
        }
    } else if (end >= 0 && mentions_href(s, i, end)) {
        r->base_start = i;
        r->base_end = end;
    }
}

static int push(Triples *t, Py_ssize_t a, Py_ssize_t b, Py_ssize_t c) {
    if (t->length + 3 > t->capacity) {
        Py_ssize_t capacity = t->capacity ? t->capacity * 2 : 96;
        Py_ssize_t *items = realloc(t->items, (size_t)capacity * sizeof(Py_ssize_t));
        if (items == NULL) return -1;
        t->items = items;
        t->capacity = capacity;
    }
    t->items[t->length++] = a;
    t->items[t->length++] = b;
    t->items[t->length++] = c;
    return 0;
}

typedef struct {
    const char *name;
    Py_ssize_t len;
} RawName;

/* Openers of raw-text regions besides comments, as the reference's _SCAN alternation lists them. */
static const RawName RAW_NAMES[] = {
    {"iframe", 6}, {"script", 6}, {"style", 5}, {"textarea", 8}, {"title", 5}, {"template", 8},
    {"xmp", 3},    {"noembed", 7}, {"noframes", 8}, {"plaintext", 9},
};

static void scan(const unsigned char *s, Py_ssize_t n, ScanResult *result) {
    /* position: where the last recognised construct ended (the reference's search position: the "<img inside
     * another tag" check looks back to it); from: where to look for the next '<'. */
    Py_ssize_t position = 0, from = 0, ordinal = 0;
    result->html_start = result->base_start = -1;
    while (from < n) {
        const unsigned char *lt = memchr(s + from, '<', (size_t)(n - from));
        if (lt == NULL) break;
        Py_ssize_t start = lt - s;
        from = start + 1; /* where to look next if nothing is recognised here */
        if (!result->html_seen || result->base_start < 0) note_head(s, n, start, position, result);
        if (start + 1 >= n) break;
        switch (s[start + 1]) { /* most '<' open other tags ("</", "<a", "<div"...): skip them at once */
        case 'i': case 'I': case '!': case 's': case 'S': case 't': case 'T': case 'x': case 'X':
        case 'n': case 'N': case 'p': case 'P':
            break;
        default:
            continue;
        }
        if (starts_with(s, n, start + 1, "img", 3) && start + 4 < n &&
            (re_space(s[start + 4]) || s[start + 4] == '/' || s[start + 4] == '>')) {
            Py_ssize_t after = attributes_end(s, start + 4, n);
            if (after < 0) continue;
            /* "<img" inside another tag (an attribute value such as title="<img ...>"): not an element. */
            if (inside_a_tag(s, n, position, start)) {
                position = from = start + 4;
                continue;
            }
            if (mentions_alt(s, start, after)) {
                if (push(&result->with_alt, ordinal, start, after) < 0) {
                    result->out_of_memory = 1;
                    return;
                }
            }
            ordinal++;
            position = from = after;
            continue;
        }
        if (starts_with(s, n, start + 1, "!--", 3)) {
            Py_ssize_t after = start + 4;
            if (after < n && s[after] == '>') {
                position = from = after + 1;
                continue;
            }
            if (after + 1 < n && s[after] == '-' && s[after + 1] == '>') {
                position = from = after + 2;
                continue;
            }
            /* The comment ends at the first "-->" or "--!>" (the tokenizer's comment end bang state). */
            Py_ssize_t end = -1;
            for (Py_ssize_t k = after; k + 3 <= n;) {
                const unsigned char *dash = memchr(s + k, '-', (size_t)(n - k));
                if (dash == NULL) break;
                k = dash - s;
                if (k + 3 <= n && s[k + 1] == '-' && s[k + 2] == '>') {
                    end = k + 3;
                    break;
                }
                if (k + 4 <= n && s[k + 1] == '-' && s[k + 2] == '!' && s[k + 3] == '>') {
                    end = k + 4;
                    break;
                }
                k++;
            }
            if (end < 0) break;
            position = from = end;
            continue;
        }
        const RawName *raw = NULL;
        for (size_t r = 0; r < sizeof(RAW_NAMES) / sizeof(RAW_NAMES[0]); r++) {
            if (starts_with(s, n, start + 1, RAW_NAMES[r].name, RAW_NAMES[r].len)) {
                raw = &RAW_NAMES[r];
                break;
            }
        }
        if (raw == NULL) continue;
        Py_ssize_t after = start + 1 + raw->len;
        unsigned char c = after < n ? s[after] : 0;
        if (after >= n || !(c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '/' || c == '>')) {
            position = from = after; /* a longer tag name such as <titles> */
            continue;
        }
        Py_ssize_t closing = raw_text_end(s, n, after, raw->name, raw->len);
        if (closing < 0) break; /* the rest of the page is raw text */
        position = from = closing;
    }
    result->img_count = ordinal;
}

/* ---- tag_attributes: the attribute values of simple tags, as the HTML tokenizer reads them ---- */

/* HTML's whitespace (tab, LF, FF, CR, space); unlike the regex \s it excludes \v, which such tags never hold. */
static inline int html_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r'; }

/* Whether s[0:n] is valid UTF-8 as Python's strict decoder sees it (no overlongs, surrogates or > U+10FFFF). */
static int valid_utf8(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        Py_ssize_t need;
        unsigned char low = 0x80, high = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0) low = 0xA0;
            if (c == 0xED) high = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0) low = 0x90;
            if (c == 0xF4) high = 0x8F;
        } else {
            return 0;
        }
        if (i + need >= n) return 0;
        if (s[i + 1] < low || s[i + 1] > high) return 0;
        for (Py_ssize_t k = 2; k <= need; k++) {
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return 0;
        }
        i += need + 1;
    }
    return 1;
}

/* s[0:n] decoded from UTF-8 with the HTML input stream's newline normalisation: CR LF and lone CR become LF. */
static PyObject *decode_newlines(const unsigned char *s, Py_ssize_t n) {
    char *buffer = PyMem_Malloc((size_t)n + 1);
    if (buffer == NULL) return PyErr_NoMemory();
    Py_ssize_t length = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        if (s[k] == '\r') {
            buffer[length++] = '\n';
            if (k + 1 < n && s[k + 1] == '\n') k++;
        } else {
            buffer[length++] = (char)s[k];
        }
    }
    PyObject *value = PyUnicode_DecodeUTF8(buffer, length, "strict");
    PyMem_Free(buffer);
    return value;
}

/* Index of the wanted name equal (ASCII case-insensitively) to s[start:end], or -1. */
static Py_ssize_t wanted_index(const unsigned char *s, Py_ssize_t start, Py_ssize_t end, PyObject *names) {
    Py_ssize_t length = end - start, count = PyTuple_GET_SIZE(names);
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *name = PyTuple_GET_ITEM(names, k);
        if (PyUnicode_GET_LENGTH(name) != length) continue;
        const char *text = PyUnicode_AsUTF8(name);
        if (text == NULL) return -2;
        Py_ssize_t j = 0;
        while (j < length && lower(s[start + j]) == (unsigned char)text[j]) j++;
        if (j == length) return k;
    }
    return -1;
}

/* One tag's wanted attributes: a new dict, Py_None when the tag needs the HTML parser (a character reference,
 * NUL inside a wanted value, a \v anywhere, or a shape this reader does not model), Py_False when the tag
 * is not valid UTF-8, NULL on error. */
static PyObject *one_tag_attributes(const unsigned char *s, Py_ssize_t start, Py_ssize_t end, PyObject *names) {
    if (end - start < 2 || s[start] != '<' || s[end - 1] != '>') Py_RETURN_NONE;
    if (memchr(s + start, '\v', (size_t)(end - start)) != NULL) Py_RETURN_NONE;
    if (!valid_utf8(s + start, end - start)) Py_RETURN_FALSE;
    Py_ssize_t pos = start + 1, last = end - 1; /* last: the closing '>' */
    while (pos < last && !html_space(s[pos]) && s[pos] != '/' && s[pos] != '>') pos++; /* the tag name */
    PyObject *found = PyDict_New();
    if (found == NULL) return NULL;
    while (pos < last) {
        unsigned char c = s[pos];
        if (html_space(c) || c == '/') {
            pos++;
            continue;
        }
        if (c == '=' || c == '>') goto needs_parser; /* '=' starting a name; '>' before the end: not modelled */
        Py_ssize_t name_start = pos;
        while (pos < last && !html_space(s[pos]) && s[pos] != '/' && s[pos] != '>' && s[pos] != '=') pos++;
        Py_ssize_t name_end = pos, value_start = -1, value_end = -1, p = pos;
        while (p < last && html_space(s[p])) p++;
        if (p < last && s[p] == '=') {
            p++;
            while (p < last && html_space(s[p])) p++;
            if (p < last && (s[p] == '"' || s[p] == '\'')) {
                const unsigned char *close = memchr(s + p + 1, s[p], (size_t)(last - p - 1));
                if (close == NULL) goto needs_parser;
                value_start = p + 1;
                value_end = close - s;
                pos = value_end + 1;
            } else {
                value_start = p;
                while (p < last && !html_space(s[p]) && s[p] != '>') p++;
                value_end = pos = p;
                if (value_end == value_start) value_start = -1; /* "name=" then nothing: Lexbor gives no value */
            }
        }
        Py_ssize_t index = wanted_index(s, name_start, name_end, names);
        if (index == -2) goto error;
        if (index < 0) continue;
        PyObject *key = PyTuple_GET_ITEM(names, index);
        int present = PyDict_Contains(found, key);
        if (present < 0) goto error;
        if (present) continue; /* a repeated attribute: the first one counts */
        PyObject *value;
        if (value_start < 0) {
            value = Py_NewRef(Py_None);
        } else {
            int carriage_returns = 0;
            for (Py_ssize_t k = value_start; k < value_end; k++) {
                if (s[k] == '&' || s[k] == '\0') goto needs_parser;
                carriage_returns |= s[k] == '\r';
            }
            value = carriage_returns ? decode_newlines(s + value_start, value_end - value_start)
                                     : PyUnicode_DecodeUTF8((const char *)s + value_start, value_end - value_start,
                                                            "strict");
            if (value == NULL) goto error;
        }
        int failed = PyDict_SetItem(found, key, value);
        Py_DECREF(value);
        if (failed < 0) goto error;
    }
    return found;
needs_parser:
    Py_DECREF(found);
    Py_RETURN_NONE;
error:
    Py_DECREF(found);
    return NULL;
}

PyDoc_STRVAR(tag_attributes_doc,
             "tag_attributes(body: bytes, spans: list[tuple[int, int]], names: tuple[str, ...]) -> list\n\n"
             "For each (start, end) span of one start tag in body: a dict of the named attributes it has\n"
             "(lower-case names; values as the HTML tokenizer gives them, CR LF and CR read as LF; None for an\n"
             "attribute without a value; the first of repeated attributes), or None when the tag needs a real HTML\n"
             "parser (a character reference or NUL in a wanted value, a vertical tab), or False when the tag is not\n"
             "valid UTF-8.");

static PyObject *tag_attributes(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer view;
    PyObject *spans, *names;
    if (!PyArg_ParseTuple(args, "y*O!O!:tag_attributes", &view, &PyList_Type, &spans, &PyTuple_Type, &names)) {
        return NULL;
    }
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(names); k++) {
        if (!PyUnicode_Check(PyTuple_GET_ITEM(names, k)) || !PyUnicode_IS_ASCII(PyTuple_GET_ITEM(names, k))) {
            PyBuffer_Release(&view);
            PyErr_SetString(PyExc_TypeError, "tag_attributes: names must be ASCII str");
            return NULL;
        }
    }
    Py_ssize_t count = PyList_GET_SIZE(spans);
    PyObject *result = PyList_New(count);
    if (result == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    for (Py_ssize_t k = 0; k < count; k++) {
        Py_ssize_t start, end;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(spans, k), "nn:span", &start, &end)) goto error;
        if (start < 0 || end > view.len || start > end) {
            PyErr_SetString(PyExc_ValueError, "tag_attributes: span outside the body");
            goto error;
        }
        PyObject *item = one_tag_attributes((const unsigned char *)view.buf, start, end, names);
        if (item == NULL) goto error;
        PyList_SET_ITEM(result, k, item);
    }
    PyBuffer_Release(&view);
    return result;
error:
    PyBuffer_Release(&view);
    Py_DECREF(result);
    return NULL;
}

static PyObject *span_or_none(Py_ssize_t start, Py_ssize_t end) {
    if (start < 0) Py_RETURN_NONE;
    return Py_BuildValue("(nn)", start, end);
}

PyDoc_STRVAR(scan_page_doc,
             "scan_page(body: bytes) -> (img_count, [(ordinal, start, end), ...], html_span, base_span)\n\n"
             "Every <img> tag a parser would see (counted), the byte spans of those that mention 'alt' with their\n"
             "ordinals, and the spans of the first <html> tag and the first <base> tag mentioning href that are\n"
             "elements (or None). Same rules as pipeline.html.scan.scan_page_reference.");

static PyObject *scan_page(PyObject *module, PyObject *arg) {
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    const unsigned char *s = (const unsigned char *)view.buf;
    Py_ssize_t n = view.len;
    ScanResult result;
    memset(&result, 0, sizeof(result));
    Py_BEGIN_ALLOW_THREADS
    scan(s, n, &result);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (result.out_of_memory) {
        free(result.with_alt.items);
        return PyErr_NoMemory();
    }
    PyObject *tags = PyList_New(result.with_alt.length / 3);
    if (tags == NULL) {
        free(result.with_alt.items);
        return NULL;
    }
    for (Py_ssize_t k = 0; k < result.with_alt.length; k += 3) {
        PyObject *triple = Py_BuildValue("(nnn)", result.with_alt.items[k], result.with_alt.items[k + 1],
                                         result.with_alt.items[k + 2]);
        if (triple == NULL) {
            Py_DECREF(tags);
            free(result.with_alt.items);
            return NULL;
        }
        PyList_SET_ITEM(tags, k / 3, triple);
    }
    free(result.with_alt.items);
    PyObject *html = span_or_none(result.html_start, result.html_end);
    PyObject *base = span_or_none(result.base_start, result.base_end);
    if (html == NULL || base == NULL) {
        Py_XDECREF(html);
        Py_XDECREF(base);
        Py_DECREF(tags);
        return NULL;
    }
    return Py_BuildValue("(nNNN)", result.img_count, tags, html, base);
}

/*
 * sha256_hex(text, chars): the first `chars` hex digits of the SHA-256 of `text` encoded as UTF-8, i.e.
 * hashlib.sha256(text.encode()).hexdigest()[:chars]. Extract makes two such keys per candidate (pipeline.core.keys);
 * through hashlib each cost about 1 us, most of it the hash object's creation, copy and hex string, not the hash.
 * The SHA-NI instructions are used where the CPU has them (checked once at import; the environment variable
 * ALTCORPUS_SHA256_PORTABLE=1 keeps the portable rounds, so tests check both against hashlib).
 */
#include <stdint.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_SHANI_CODE 1
#endif

static const uint32_t sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_blocks_portable(uint32_t state[8], const unsigned char *data, size_t blocks) {
    for (; blocks; blocks--, data += 64) {
        uint32_t w[64];
        for (int t = 0; t < 16; t++) {
            w[t] = ((uint32_t)data[4 * t] << 24) | ((uint32_t)data[4 * t + 1] << 16) |
                   ((uint32_t)data[4 * t + 2] << 8) | (uint32_t)data[4 * t + 3];
        }
        for (int t = 16; t < 64; t++) {
            uint32_t s0 = ROTR(w[t - 15], 7) ^ ROTR(w[t - 15], 18) ^ (w[t - 15] >> 3);
            uint32_t s1 = ROTR(w[t - 2], 17) ^ ROTR(w[t - 2], 19) ^ (w[t - 2] >> 10);
            w[t] = w[t - 16] + s0 + w[t - 7] + s1;
        }
        uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
        uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
        for (int t = 0; t < 64; t++) {
            uint32_t t1 = h + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) + sha256_k[t] + w[t];
            uint32_t t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            h = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + t2;
        }
        state[0] += a;
        state[1] += b;
        state[2] += c;
        state[3] += d;
        state[4] += e;
        state[5] += f;
        state[6] += g;
        state[7] += h;
    }
}

#ifdef HAVE_SHANI_CODE
/* The rounds with the SHA extensions: four rounds per group, the message schedule kept in four vectors. */
__attribute__((target("sha,sse4.1"))) static void sha256_blocks_shani(uint32_t state[8], const unsigned char *data,
                                                                         size_t blocks) {
    const __m128i byte_swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i tmp = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[0]), 0xB1); /* CDAB */
    __m128i state1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[4]), 0x1B); /* EFGH */
    __m128i state0 = _mm_alignr_epi8(tmp, state1, 8);                                      /* ABEF */
    state1 = _mm_blend_epi16(state1, tmp, 0xF0);                                            /* CDGH */
    for (; blocks; blocks--, data += 64) {
        __m128i abef = state0, cdgh = state1, msg[4];
        for (int group = 0; group < 16; group++) {
            __m128i *current = &msg[group & 3], *next = &msg[(group + 1) & 3], *previous = &msg[(group + 3) & 3];
            if (group < 4) {
                *current = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16 * group)), byte_swap);
            }
            __m128i words = _mm_add_epi32(*current, _mm_loadu_si128((const __m128i *)&sha256_k[4 * group]));
            state1 = _mm_sha256rnds2_epu32(state1, state0, words);
            if (group >= 3 && group <= 14) {
                *next = _mm_sha256msg2_epu32(_mm_add_epi32(*next, _mm_alignr_epi8(*current, *previous, 4)), *current);
            }
            state0 = _mm_sha256rnds2_epu32(state0, state1, _mm_shuffle_epi32(words, 0x0E));
            if (group >= 1 && group <= 12) {
                *previous = _mm_sha256msg1_epu32(*previous, *current);
            }
        }
        state0 = _mm_add_epi32(state0, abef);
        state1 = _mm_add_epi32(state1, cdgh);
    }
    tmp = _mm_shuffle_epi32(state0, 0x1B);       /* FEBA */
    state1 = _mm_shuffle_epi32(state1, 0xB1);    /* DCHG */
    state0 = _mm_blend_epi16(tmp, state1, 0xF0); /* DCBA */
    state1 = _mm_alignr_epi8(state1, tmp, 8);    /* ABEF */
    _mm_storeu_si128((__m128i *)&state[0], state0);
    _mm_storeu_si128((__m128i *)&state[4], state1);
}

static int cpu_has_shani(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & (1u << 19)) || !(ecx & (1u << 9))) {
        return 0; /* SSE4.1 and SSSE3 */
    }
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) {
        return 0;
    }
    return (ebx >> 29) & 1; /* SHA */
}
#endif

typedef void (*sha256_blocks_fn)(uint32_t state[8], const unsigned char *data, size_t blocks);
static sha256_blocks_fn sha256_blocks = sha256_blocks_portable;

static void sha256_digest(const unsigned char *data, size_t length, unsigned char out[32]) {
    uint32_t state[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                         0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    size_t whole = length / 64;
    if (whole) {
        sha256_blocks(state, data, whole);
    }
    unsigned char tail[128];
    size_t rest = length - whole * 64;
    memcpy(tail, data + whole * 64, rest);
    tail[rest] = 0x80;
    size_t tail_length = rest + 9 <= 64 ? 64 : 128;
    memset(tail + rest + 1, 0, tail_length - rest - 1);
    uint64_t bits = (uint64_t)length * 8;
    for (int i = 0; i < 8; i++) {
        tail[tail_length - 1 - i] = (unsigned char)(bits >> (8 * i));
    }
    sha256_blocks(state, tail, tail_length / 64);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (unsigned char)(state[i] >> 24);
        out[4 * i + 1] = (unsigned char)(state[i] >> 16);
        out[4 * i + 2] = (unsigned char)(state[i] >> 8);
        out[4 * i + 3] = (unsigned char)state[i];
    }
}

PyDoc_STRVAR(sha256_hex_doc,
             "sha256_hex(text, chars) -> str\n\n"
             "The first chars (0 to 64) hex digits of SHA-256 of text's UTF-8 bytes: "
             "hashlib.sha256(text.encode()).hexdigest()[:chars].");

static PyObject *sha256_hex(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "sha256_hex(text: str, chars: int)");
        return NULL;
    }
    Py_ssize_t chars = PyLong_AsSsize_t(args[1]);
    if (chars == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (chars < 0 || chars > 64) {
        PyErr_SetString(PyExc_ValueError, "sha256_hex: chars must be 0 to 64");
        return NULL;
    }
    Py_ssize_t length;
    const char *utf8 = PyUnicode_AsUTF8AndSize(args[0], &length); /* raises on lone surrogates, as str.encode() */
    if (utf8 == NULL) {
        return NULL;
    }
    unsigned char digest[32];
    sha256_digest((const unsigned char *)utf8, (size_t)length, digest);
    PyObject *hex = PyUnicode_New(chars, 127);
    if (hex == NULL) {
        return NULL;
    }
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(hex);
    static const char digits[] = "0123456789abcdef";
    for (Py_ssize_t i = 0; i < chars; i++) {
        out[i] = (Py_UCS1)digits[(digest[i / 2] >> (i % 2 ? 0 : 4)) & 15];
    }
    return hex;
}

static PyMethodDef methods[] = {
    {"scan_page", scan_page, METH_O, scan_page_doc},
    {"tag_attributes", tag_attributes, METH_VARARGS, tag_attributes_doc},
    {"sha256_hex", (PyCFunction)(void (*)(void))sha256_hex, METH_FASTCALL, sha256_hex_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "pipeline.html._tagscan",
    "Compiled <img> tag scanner; the reference is pipeline.html.scan.scan_page_reference.",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__tagscan(void) {
#ifdef HAVE_SHANI_CODE
    const char *portable = getenv("ALTCORPUS_SHA256_PORTABLE");
    if (cpu_has_shani() && !(portable != NULL && portable[0] == '1')) {
        sha256_blocks = sha256_blocks_shani;
    }
#endif
    PyObject *module = PyModule_Create(&module_def);
    const char *rounds = sha256_blocks == sha256_blocks_portable ? "portable" : "sha-ni";
    if (module != NULL && PyModule_AddStringConstant(module, "sha256_rounds", rounds) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
