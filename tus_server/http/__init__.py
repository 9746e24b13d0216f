"""The HTTP layer: the tus 1.0 blueprint (tus.py), the IETF draft (ietf.py), downloads, the
listing, header parsing, request bodies read from the socket, and checksums. It reaches MinIO
only through the `Store` in storage/, and asks access/ and events/ what is allowed and who is told."""
