"""Hooks in tusd's wire format (hooks.py), their HTTP transport (transport.py) and the durable
outbox that delivers post-* events after a crash (outbox.py)."""
