"""The one error hierarchy of the pipeline.

Two kinds, because callers treat them in exactly two ways:

- :class:`BadInputError`: the request (conf, CLI arguments) or the data is wrong. Retrying cannot
  help: Airflow fails the task at once (``AirflowFailException``), the CLI exits 2 with one line.
- :class:`TransientError`: the outside world failed (storage unreachable, Yahoo rate limit,
  network). Airflow retries it with backoff; the CLI exits 4 with one line.

Every message names what is wrong: the field, the file, the column, the symbol or the bar.
"""

from __future__ import annotations


class TradingError(Exception):
    """Base of every error the library raises on purpose."""


class BadInputError(TradingError, ValueError):
    """A request or data the pipeline cannot use. Never retried."""


class RequestError(BadInputError):
    """A conf key or CLI argument is invalid; the message names the field."""


class BadDataError(BadInputError):
    """Stored or fetched bars violate the data contract; the message names file, column, symbol, bar."""


class TransientError(TradingError, RuntimeError):
    """An outside system failed; trying again later may succeed."""
