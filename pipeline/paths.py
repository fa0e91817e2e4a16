"""Paths: an interview id never chooses where a file goes.

Ids come from people's files (front matter, a .yaml beside the transcript, the file name), so an
id such as ``../../x`` or ``/etc/passwd`` must not become a path. Every file named after an id
gets ``safe_file_stem(id)``; the id itself stays in the outputs as data.
"""

from __future__ import annotations

import hashlib
import re

UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
MAX_STEM = 100
# Names Windows refuses for a file whatever the extension.
RESERVED = {"con", "prn", "aux", "nul"} | {f"{d}{n}" for d in ("com", "lpt") for n in range(10)}


def safe_file_stem(identifier: str) -> str:
    """A file name (without extension) for ``identifier``: ASCII letters, digits, '-' and '_',
    at most 100 characters, never empty, never a path. An id that is already such a name is
    kept as it is; any other gets its unsafe characters replaced by '_' and a short hash of
    the whole id appended, so that different ids keep different names."""
    text = str(identifier)
    cleaned = UNSAFE.sub("_", text).strip("_")
    if cleaned == text and 0 < len(text) <= MAX_STEM and text.lower() not in RESERVED:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    stem = cleaned[: MAX_STEM - len(digest) - 1].rstrip("_-")
    return f"{stem}-{digest}" if stem else f"id-{digest}"


def same_file_name(a: str, b: str) -> bool:
    """Would ids ``a`` and ``b`` be written to the same file? (Windows and macOS disks do not
    tell 'WP-01' from 'wp-01'.)"""
    return safe_file_stem(a).casefold() == safe_file_stem(b).casefold()
