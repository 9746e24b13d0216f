"""tuspy against the storage contract: a 23 MiB file in 5 MiB chunks makes exactly five objects."""
import os

import requests
from tusclient import client as tus_client

from .helpers import MIB, chunk_objects, sha256, stored_file, upload_id


def test_tuspy_23_mib_upload_is_stored_as_five_chunk_objects(server, store, tmp_path):
    data = os.urandom(23 * MIB)
    path = tmp_path / "name"
    path.write_bytes(data)
    uploader = tus_client.TusClient(server.files_url()).uploader(
        str(path), chunk_size=5 * MIB, metadata={"filename": "name"})
    uploader.upload()
    uid = upload_id(uploader.url)
    assert chunk_objects(store, uid) == {f"name.part{i}of5": (5 if i < 5 else 3) * MIB
                                         for i in range(1, 6)}
    assert sha256(stored_file(store, uid)) == sha256(data)
    assert sha256(requests.get(uploader.url).content) == sha256(data)
