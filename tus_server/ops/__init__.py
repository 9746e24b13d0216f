"""ops: see the layout in README.md."""
