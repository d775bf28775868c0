"""Extract the World English Bible (public domain) from Debian's sword-text-web module.

Usage: python extract_web.py MODULE_DIR OUT_DIR
Each compressed block of the module is one book; each verse record is cleaned of OSIS
markup and footnotes; paragraph markers become blank lines.
"""
import re, struct, sys, zlib, os
src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
k = 0
for t in ("ot", "nt"):
    bzs = open(f"{src}/{t}.bzs", "rb").read(); bzz = open(f"{src}/{t}.bzz", "rb").read()
    bzv = open(f"{src}/{t}.bzv", "rb").read()
    blocks = {}
    for i in range(len(bzs) // 12):
        off, cs, us = struct.unpack("<III", bzs[i*12:i*12+12])
        blocks[i] = zlib.decompress(bzz[off:off+cs]) if cs else b""
    verses = {}
    for j in range(len(bzv) // 10):
        b, start, size = struct.unpack("<IIH", bzv[j*10:j*10+10])
        if size:
            verses.setdefault(b, []).append(blocks[b][start:start+size].decode("utf-8"))
    for b in sorted(verses):
        parts = []
        title = None
        for v in verses[b]:
            m = re.search(r'type="x-usfm-toc1"', v)
            if m and title is None:
                mt = re.search(r'<milestone n="([^"]+)" type="x-usfm-toc1"', v)
                title = mt.group(1) if mt else None
            v = re.sub(r"<note\b.*?</note>", "", v, flags=re.S)
            v = re.sub(r"<title\b.*?</title>", "", v, flags=re.S)
            v = re.sub(r'<div\b[^>]*type="x-p"[^>]*/>', "\n\n", v)
            v = re.sub(r"<chapter\b[^>]*/>", "\n\n", v)
            v = re.sub(r"<[^>]+>", "", v)
            parts.append(v)
        text = " ".join(parts)
        text = re.sub(r"[ \t]+", " ", text)
        text = re.sub(r" *\n[\n ]*", "\n\n", text).strip()
        k += 1
        open(f"{out}/{k:03d}.txt", "w").write((title or "") + "\n\n" + text + "\n")
