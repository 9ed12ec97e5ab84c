"""Export API v3 simulator: a loopback HTTP server serving synthetic or saved conversations.

    with FakeApi(FakeApiOptions(dataset=DatasetSpec(days=7, per_day=50))) as api:
        requests.post(api.url + "/api/export/v3", json={"from": "2024-03-25", "to": "2024-03-26"},
                      headers={"Authorization": "Bearer sim-token"})
        api.matching_ids(start, end)          # what that export returns at the server's clock
        api.export_requests                   # POSTs to the export endpoint so far
        api.exports_in_flight_peak            # the most exports answered at one time
        api.refused_at_capacity               # 429s sent beyond FakeApiOptions.max_concurrent

Faults (`Faults(...)`) apply to the first K export requests, counted over every export POST.
`python -m etl.fakeapi --help` / `etl fake-api --help` lists every option.
"""

from etl.fakeapi.dataset import Dataset
from etl.fakeapi.faults import Faults
from etl.fakeapi.options import FakeApiOptions
from etl.fakeapi.server import FakeApi
from etl.fakeapi.synth import DatasetSpec

__all__ = ["Dataset", "DatasetSpec", "FakeApi", "FakeApiOptions", "Faults"]
