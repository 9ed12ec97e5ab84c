"""Incremental ETL from a chatbot platform's Export API v3 into a SQL warehouse."""

__version__ = "0.1.0"
