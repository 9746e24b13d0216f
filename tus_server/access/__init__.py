"""Who may do what: bearer tokens (tokens.py), owners and scopes (auth.py, one `authorize()`),
signed download links (links.py) and per-owner quotas (quotas.py)."""
