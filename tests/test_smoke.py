from tusclient import client as tus_client

from .helpers import MIB, create_url, head, patch, sha256, stored_file, upload_id, chunk_objects


def test_tuspy_round_trip_23_mib_makes_five_chunks(server, store, tmp_path):
    data = __import__("os").urandom(23 * MIB)
    path = tmp_path / "name"
    path.write_bytes(data)
    uploader = tus_client.TusClient(server.files_url()).uploader(str(path), chunk_size=5 * MIB, metadata={"filename": "name"})
    uploader.upload()
    uid = upload_id(uploader.url)
    assert chunk_objects(store, uid) == {f"name.part{i}of5": (5 if i < 5 else 3) * MIB for i in range(1, 6)}
    assert sha256(stored_file(store, uid)) == sha256(data)
