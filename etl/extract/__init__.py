"""Extract: the streaming Export API v3 client and its window retry policy."""

from etl.extract.client import ExportClient, request_body, validate_response
from etl.extract.errors import (
    AuthError,
    BrokenStreamError,
    ExportDataError,
    ExtractError,
    FatalAPIError,
    RequestRejected,
    ResponseTooLarge,
    RetriableAPIError,
)
from etl.extract.retry import is_retryable, window_retrying
from etl.extract.stream import ExportStream

__all__ = [
    "AuthError",
    "BrokenStreamError",
    "ExportClient",
    "ExportDataError",
    "ExportStream",
    "ExtractError",
    "FatalAPIError",
    "RequestRejected",
    "ResponseTooLarge",
    "RetriableAPIError",
    "is_retryable",
    "request_body",
    "validate_response",
    "window_retrying",
]
