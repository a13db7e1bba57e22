"""What the API reads from the rest of the collector, as Protocols: the runtime (its config,
the health of its sources, the pipeline's figures, the derivation's state) and the ledger's
read rooms. `collector.runtime.Runtime` and `collector.ledger.Ledger` fit them; so must any
stand-in a test or a bench serves (mypy checks both: `tests/test_api_boundary.py`).

Every member is read-only here (a property), so a plain attribute of a narrower type fits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Sized
from typing import Protocol

from collector.config import CollectorConfig
from collector.ledger.aggregates import Aggregates
from collector.ledger.catalogue import Catalogue
from collector.ledger.latest import Latest
from collector.ledger.pages import Pages
from collector.ledger.production import ProductionStore
from collector.model import BucketCounts, SourceHealth


class LedgerView(Protocol):
    """The ledger as the API reads it: its rooms, its change count, and where it lives (the
    API's worker processes open their own connection to it)."""

    @property
    def url(self) -> str: ...

    @property
    def schema(self) -> str | None: ...

    @property
    def changes(self) -> int:
        """Grows with every change this process commits to readings."""
        ...

    @property
    def catalogue(self) -> Catalogue: ...

    @property
    def pages(self) -> Pages: ...

    @property
    def aggregates(self) -> Aggregates: ...

    @property
    def latest(self) -> Latest: ...

    @property
    def production(self) -> ProductionStore: ...


class PipelineView(Protocol):
    """The pipeline's figures: `stats()` holds ok, backlog, queued, queue_size, received,
    suppressed, written, spilled, spooled, replayed, dropped, write_errors and last_error."""

    @property
    def write_seconds(self) -> BucketCounts: ...

    def stats(self) -> Mapping[str, object]: ...


class DerivationView(Protocol):
    """The derivation of machine states and part counts (`collector.derive`)."""

    @property
    def rules(self) -> Mapping[str, object]:
        """The production rules by machine id; empty when no machine has any."""
        ...

    @property
    def ready(self) -> bool: ...

    @property
    def last_error(self) -> str | None: ...

    @property
    def stats(self) -> Mapping[str, int]: ...

    @property
    def buffers(self) -> Mapping[str, Sized]: ...

    def health(self) -> dict[str, object]: ...

    def state_now(self, machine: str) -> str | None: ...


class RuntimeView(Protocol):
    """A running collector as the API sees it; `derivation` is None where nothing derives
    production data (an API over a ledger alone)."""

    @property
    def config(self) -> CollectorConfig: ...

    @property
    def ledger(self) -> LedgerView: ...

    @property
    def health(self) -> Sequence[SourceHealth]: ...

    @property
    def pipeline(self) -> PipelineView: ...

    @property
    def derivation(self) -> DerivationView | None: ...
