"""Overview text where it enters from outside a dataset: bytes decoded as UTF-8, strings made safe for tokenizers."""
from __future__ import annotations

import re

from movie_genres.data.dataset import DataError

_SURROGATE = re.compile("[\ud800-\udfff]")


def has_surrogates(text: str) -> bool:
    """True where ``text`` holds surrogate code points (Python keeps undecodable argv bytes as ``\\udcXX``)."""
    return bool(_SURROGATE.search(text))


def clean_overview(text):
    """``text`` with lone surrogates replaced by U+FFFD (paired ones joined), so tokenizers never see them.

    Anything that is not a string (None) is returned as it is.
    """
    if not isinstance(text, str) or not has_surrogates(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def decode_overview(raw: bytes, source: str = "the overview") -> str:
    """UTF-8 bytes (a leading byte-order mark dropped) -> text; :class:`DataError` naming the first bad byte otherwise."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{source} is not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start} (line {line}) cannot be "
            "decoded; give the overview as UTF-8 (iconv -f latin1 -t utf-8 converts a Latin-1 file)"
        ) from None
