"""tribute.attribution (see DESIGN.md)."""
