"""Numbered SQL migrations of the workspace schema (NNNN_name.sql, applied in order)."""
