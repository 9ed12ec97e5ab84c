from typing import Any

TEXT: int
INT: int
BOOL: int
TIME: int
JSON: int
NOT_NULL: int

def format_rows(rows: list[tuple[Any, ...]], kinds: tuple[int, ...], dumps: Any) -> bytes: ...
