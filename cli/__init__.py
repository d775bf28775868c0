"""The click CLI: each command parses, makes one library call, and renders."""
