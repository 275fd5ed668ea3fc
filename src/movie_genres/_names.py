"""The did-you-mean hint every lookup by name gives (config keys, models, genres, encoders, service limits)."""
from __future__ import annotations

import difflib


def did_you_mean(name, choices) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices`` to ``name``, or ``""``.

    Example:
        >>> did_you_mean("ensembel", ["cnn", "ensemble"])
        "; did you mean 'ensemble'?"
    """
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f"; did you mean '{close[0]}'?" if close else ""
