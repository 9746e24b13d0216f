"""Other real tus clients against this server: aiotus (asyncio) and tuspy's plain API."""
from __future__ import annotations

import asyncio
import io
import os

import aiotus
import requests
from tusclient import client as tus_client

from .helpers import MIB, chunk_objects, head, sha256, upload_id


def test_aiotus_completes_an_upload(make_server, store):
    server = make_server(chunk_size=MIB)
    data = os.urandom(3 * MIB + 5)

    async def send():
        config = aiotus.RetryConfiguration(max_retry_period_seconds=10)
        return await aiotus.upload(server.files_url(), io.BytesIO(data),
                                   {"filename": b"aio.bin", "filetype": b"application/octet-stream"},
                                   config=config, chunksize=MIB)

    location = asyncio.run(send())
    assert location is not None
    url = str(location)
    assert head(url).headers["Upload-Offset"] == str(len(data))
    assert sha256(requests.get(url).content) == sha256(data)
    assert set(chunk_objects(store, upload_id(url))) == {f"aio.bin.part{i}of4" for i in range(1, 5)}


def test_tuspy_file_stream_upload(server):
    data = os.urandom(2 * MIB + 1)
    uploader = tus_client.TusClient(server.files_url()).uploader(
        file_stream=io.BytesIO(data), chunk_size=MIB, metadata={"filename": "stream.bin"})
    uploader.upload()
    response = requests.get(uploader.url)
    assert response.content == data
    assert response.headers["Content-Disposition"] == 'attachment; filename=stream.bin'
