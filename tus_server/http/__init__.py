"""http: see the layout in README.md."""
