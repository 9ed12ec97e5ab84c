from collections.abc import Callable, Mapping
from typing import Any

def project(
    obj: Mapping[str, Any],
    fields: dict[str, tuple[int, int]],
    row: list[Any],
    tag: str | None = None,
    /,
) -> dict[str, Any] | None: ...
def configure(
    parse_time: Callable[[Any, str], Any], fallback: Callable[..., Any], bad_field: type
) -> None: ...
def build(
    conv: Any, cid: int, messages: list[Any]
) -> (
    tuple[tuple[Any, ...], list[Any], list[Any], list[Any], list[Any], list[Any], list[Any]] | None
): ...
def configure_build(spec: dict[str, Any]) -> None: ...
