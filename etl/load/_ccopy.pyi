from typing import Any

ABI_VERSION: int
TEXT: int
INT: int
INT4: int
BOOL: int
TIME: int
JSON: int
NOT_NULL: int

def format_rows(rows: list[tuple[Any, ...]], kinds: tuple[int, ...], dumps: Any) -> bytes: ...
def format_binary(
    rows: list[tuple[Any, ...]], kinds: tuple[int, ...], dumps: Any, fields: int
) -> bytes: ...
