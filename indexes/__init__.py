"""tribute.indexes (see DESIGN.md)."""
