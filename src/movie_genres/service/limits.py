"""What one request may send: the service's limits, as ``Limits`` fields, ``serve()`` keywords and CLI options.

Each limit is declared once here, with its default and its help; ``movie-genres serve`` gets one option per field
(``max_upload_bytes`` -> ``--max-upload-bytes``).
"""
from __future__ import annotations

import argparse
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from movie_genres._names import did_you_mean
from movie_genres.features.posters import MAX_PIXELS

MIB = 1024 * 1024
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers on top of a /predict payload
DEFAULT_CONCURRENCY = 64  # open requests before the server answers 503 at once (uvicorn's limit_concurrency)


def _limit(default: int, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = _limit(10 * MIB, "largest poster file")
    max_overview_chars: int = _limit(5000, "longest overview, in characters")
    max_batch: int = _limit(32, "most films per /predict/batch request")
    max_image_pixels: int = _limit(MAX_PIXELS, "most pixels in one poster, checked before decoding it; the default "
                                               "is also the most (the package's poster limit)")
    max_batch_bytes: int = _limit(64 * MIB, "largest /predict/batch request body")
    max_batch_pixels: int = _limit(100_000_000, "most pixels of all posters of one batch together "
                                                "(100 MP is about 300 MB once decoded)")
    max_decoding_pixels: int = _limit(200_000_000, "most poster pixels decoded and held at once, all requests "
                                                   "together (200 MP is about 600 MB); a request over the rest "
                                                   "waits its turn (bounds the service's memory)")
    max_explain_words: int = _limit(100, "overview words /explain weighs (each is one more pass of the overview "
                                         "through the model; later words get no weight)")
    body_timeout_seconds: int = _limit(60, "seconds a request's whole body may take to arrive (then 408), so slow "
                                           "clients cannot hold every connection")
    min_body_rate_bytes: int = _limit(8 * 1024, "slowest average rate, in bytes a second, at which a request body may "
                                                "arrive after its first 5 s (then 408): a client sending a byte a "
                                                "second is cut off after about 5 s")

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.max_decoding_pixels < self.max_image_pixels:
            raise ValueError(f"max_decoding_pixels ({self.max_decoding_pixels:,}) must be at least max_image_pixels "
                             f"({self.max_image_pixels:,}): one poster must fit")
        if self.max_image_pixels > MAX_PIXELS:
            raise ValueError(f"max_image_pixels can be at most {MAX_PIXELS:,} (posters over that are refused "
                             f"everywhere), got {self.max_image_pixels:,}")

    @property
    def max_predict_body(self) -> int:
        return self.max_upload_bytes + 4 * self.max_overview_chars + MULTIPART_OVERHEAD


def make_limits(**limits: int) -> Limits:
    """``Limits(**limits)``; an unknown name is a ``ValueError`` with a did-you-mean."""
    names = [f.name for f in fields(Limits)]
    for key in limits:
        if key not in names:
            hint = did_you_mean(key, names) or f" (limits: {', '.join(names)})"
            raise ValueError(f"unknown service limit {key!r}{hint}")
    return Limits(**limits)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)i?b?\s*$", re.IGNORECASE)


def parse_bytes(text: str) -> int:
    """``"10485760"``, ``"512K"``, ``"10M"``, ``"1GB"`` -> bytes (K/M/G are 1024-based)."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 10485760, 512K, 10M)")
    number, unit = match.groups()
    value = int(float(number) * 1024 ** " kmg".index(unit.lower() or " "))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte: {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _show(name: str, value: int) -> str:
    return f"{value // MIB}M" if name.endswith("_bytes") and value % MIB == 0 else f"{value:,}"


def add_options(parser: argparse.ArgumentParser) -> None:
    """One ``--max-...`` option per limit, plus ``--limit-concurrency``; :func:`options` reads them back."""
    group = parser.add_argument_group("limits (a request over one is refused with a message)")
    for f in fields(Limits):
        unit = " (bytes; K, M, G suffixes)" if f.name.endswith("_bytes") else ""
        group.add_argument("--" + f.name.replace("_", "-"), dest=f.name, metavar="N", default=None,
                           type=parse_bytes if f.name.endswith("_bytes") else _positive_int,
                           help=f"{f.metadata['help']}{unit} (default: {_show(f.name, f.default)})")
    group.add_argument("--limit-concurrency", metavar="N", type=_positive_int, default=None,
                       help="open requests at once; more are answered 503 straight away instead of piling up "
                            f"(default: {DEFAULT_CONCURRENCY})")


def options(args: argparse.Namespace) -> dict[str, int]:
    """The limits given on the command line, as ``serve()`` keywords (the others keep their defaults)."""
    names = [f.name for f in fields(Limits)] + ["limit_concurrency"]
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
