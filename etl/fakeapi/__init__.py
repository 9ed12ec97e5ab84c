"""Export API v3 simulator: a loopback HTTP server serving synthetic or saved conversations."""

from etl.fakeapi.dataset import Dataset
from etl.fakeapi.faults import Faults
from etl.fakeapi.options import FakeApiOptions
from etl.fakeapi.server import FakeApi
from etl.fakeapi.synth import DatasetSpec

__all__ = ["Dataset", "DatasetSpec", "FakeApi", "FakeApiOptions", "Faults"]
