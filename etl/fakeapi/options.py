"""Start-up options of the simulator."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from etl.fakeapi.dataset import Dataset
from etl.fakeapi.faults import Faults
from etl.fakeapi.synth import DatasetSpec

# The Retry-After (seconds) of a 429 sent beyond max_concurrent exports at once.
AT_CAPACITY_RETRY_AFTER = "1"


@dataclass(frozen=True)
class FakeApiOptions:
    """Everything the simulator is configured with; fixed for the server's lifetime."""

    host: str = "127.0.0.1"
    port: int = 0  # 0 = an ephemeral port
    token: str | None = "sim-token"  # static bearer token; None disables static tokens
    oauth_client_id: str | None = "sim-client"
    oauth_client_secret: str | None = "sim-secret"
    oauth_token_ttl: float = 300.0  # seconds
    zone: str = "Europe/Oslo"  # server zone: naive from/to and the offsets it writes
    dataset: DatasetSpec | Dataset = field(default_factory=DatasetSpec)  # or a prebuilt Dataset
    from_file: Path | None = None  # serve a saved export file's conversations instead
    now: datetime | None = None  # server clock (naive = server zone); None = the real clock
    faults: Faults = field(default_factory=Faults)
    # A server with a realistic pace (issue 13's benchmark): each export's query takes
    # `latency` seconds before the first byte and serializes `rate` conversations a second;
    # beyond `max_concurrent` exports at once it answers 429 with Retry-After.
    latency: float = 0.0
    rate: float | None = None
    max_concurrent: int | None = None
    # Conversations the vendor has deleted: never exported (FakeApi.delete adds more).
    deleted_ids: frozenset[int] = frozenset()

    def __repr__(self) -> str:  # never show secrets
        return (
            f"FakeApiOptions(host={self.host!r}, port={self.port}, zone={self.zone!r}, "
            f"dataset={self.dataset!r}, from_file={self.from_file!r}, now={self.now!r}, "
            f"faults={self.faults!r}, latency={self.latency}, rate={self.rate}, "
            f"max_concurrent={self.max_concurrent}, deleted_ids={len(self.deleted_ids)})"
        )
