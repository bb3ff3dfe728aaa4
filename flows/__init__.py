"""Orchestration, adapters (storage, validation, tracking), settings and the `hypernet` CLI."""
