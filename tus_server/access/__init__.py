"""access: see the layout in README.md."""
