import pytest

from trading_lib.symbols import (
    SymbolError,
    segment_to_symbol,
    symbol_to_segment,
    validate_symbol,
    validate_symbols,
)


@pytest.mark.parametrize("symbol", ["AAPL", "BRK-B", "BF.B", "^VIX", "^GSPC", "RY.TO", "EURUSD=X", "brk-b"])
def test_valid_symbols(symbol):
    assert validate_symbol(symbol) == symbol.upper()


@pytest.mark.parametrize(
    "symbol",
    ["../x", "", "A/B", " AAPL", "AAPL ", "AA PL", "A" * 40, "^", "A..B", "A_B", None, 42, "^^VIX", "-A"],
)
def test_invalid_symbols_are_rejected_naming_the_symbol(symbol):
    with pytest.raises(SymbolError) as excinfo:
        validate_symbol(symbol)
    assert repr(symbol) in str(excinfo.value)


def test_segment_round_trip_and_no_collisions():
    symbols = ["^VIX", "VIX", "^GSPC", "BRK-B", "BF.B"]
    segments = [symbol_to_segment(s) for s in symbols]
    assert len(set(segments)) == len(symbols)
    assert all("/" not in s and "^" not in s and s not in (".", "..") for s in segments)
    assert [segment_to_symbol(s) for s in segments] == symbols


def test_validate_symbols_rejects_duplicates_and_non_lists():
    assert validate_symbols(["aapl", "MSFT"]) == ["AAPL", "MSFT"]
    with pytest.raises(SymbolError, match="listed twice"):
        validate_symbols(["AAPL", "aapl"])
    with pytest.raises(SymbolError, match="must be a list"):
        validate_symbols("AAPL")
    with pytest.raises(SymbolError, match="empty"):
        validate_symbols([])
