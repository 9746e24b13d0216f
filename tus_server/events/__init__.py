"""events: see the layout in README.md."""
