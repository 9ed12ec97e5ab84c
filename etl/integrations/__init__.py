"""Integrations with orchestrators (optional extras)."""
