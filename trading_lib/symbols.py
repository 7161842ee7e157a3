"""Yahoo-style ticker symbols: one strict validator and one mapping to a safe path segment."""

from __future__ import annotations

import re

from trading_lib.errors import BadInputError

# Letters/digits, optionally an index caret in front, and '-' or '.' separated share classes or
# exchange suffixes (BRK-B, BF.B, RY.TO). No slash, no whitespace, no '..': a symbol becomes a folder.
_SYMBOL = re.compile(r"^\^?[A-Z0-9]{1,10}(?:[.\-=][A-Z0-9]{1,10}){0,2}$")
# The same rule for JSON schemas (Airflow Params), case-insensitive as validate_symbol upper-cases.
JSON_SCHEMA_PATTERN = r"^\^?[A-Za-z0-9]{1,10}([.\-=][A-Za-z0-9]{1,10}){0,2}$"
MAX_SYMBOL_LENGTH = 20

# The stocks a run ingests when the request names none (also the sample data's first ten).
DEFAULT_SYMBOLS = ("AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "META", "TSLA", "JPM", "V", "UNH")
MARKET_INDEX = "^GSPC"
VOLATILITY_INDEX = "^VIX"


class SymbolError(BadInputError):
    """A symbol that is not a valid Yahoo-style ticker; the message names it."""


def validate_symbol(symbol: object) -> str:
    """Return ``symbol`` normalised to upper case, or raise :class:`SymbolError` naming it."""
    if not isinstance(symbol, str):
        raise SymbolError(f"symbol {symbol!r} must be a string, not {type(symbol).__name__}")
    if symbol != symbol.strip() or not symbol:
        raise SymbolError(f"symbol {symbol!r} is empty or has surrounding whitespace")
    if len(symbol) > MAX_SYMBOL_LENGTH:
        raise SymbolError(f"symbol {symbol!r} is longer than {MAX_SYMBOL_LENGTH} characters")
    normalised = symbol.upper()
    if not _SYMBOL.fullmatch(normalised):
        raise SymbolError(
            f"symbol {symbol!r} is not a Yahoo-style ticker "
            "(letters/digits, optional leading ^, parts joined by '-', '.' or '=')"
        )
    return normalised


def validate_symbols(symbols: object) -> list[str]:
    """Validate a list of symbols; duplicates are an error (they would write the same partitions)."""
    if isinstance(symbols, str) or not isinstance(symbols, list | tuple):
        raise SymbolError(f"symbols {symbols!r} must be a list of tickers")
    if not symbols:
        raise SymbolError("the list of symbols is empty")
    result = [validate_symbol(s) for s in symbols]
    seen: set[str] = set()
    for s in result:
        if s in seen:
            raise SymbolError(f"symbol {s!r} is listed twice")
        seen.add(s)
    return result


def symbol_to_segment(symbol: str) -> str:
    """The folder name for a symbol: '^' (awkward in shells and URLs) becomes '_', the rest is kept.

    Valid symbols never contain '_', so the mapping is reversible and two symbols never share a folder.
    """
    return validate_symbol(symbol).replace("^", "_")


def segment_to_symbol(segment: str) -> str:
    return validate_symbol(segment.replace("_", "^", 1) if segment.startswith("_") else segment)
