// tus-js-client in Node speaking the IETF draft, for tests/test_ietf.py.
//
//   node tests/js/tus_js_ietf.mjs <endpoint> <file> <protocol> <chunkSize> <stopAfter> [uploadUrl]
//
// protocol is 'ietf-draft-03' or 'ietf-draft-05'. With stopAfter > 0 the upload is aborted (the
// PATCH in flight is cut) once that many bytes were sent, and the upload URL is printed:
//   {"url": ..., "done": false}
// Run again with that URL to resume (HEAD, then PATCH from the server's offset); on success:
//   {"url": ..., "done": true, "requests": [...]}
import fs from 'node:fs'
import path from 'node:path'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const tus = require('tus-js-client')

const [endpoint, file, protocol, chunkArg, stopArg, uploadUrl] = process.argv.slice(2)
const stopAfter = Number(stopArg || 0)
const requests = []
let stopped = false
const options = {
  endpoint,
  protocol,
  chunkSize: Number(chunkArg),
  retryDelays: null,
  metadata: { filename: path.basename(file), filetype: 'application/octet-stream' },
  onBeforeRequest(req) {
    requests.push({ method: req.getMethod(), offset: req.getHeader('Upload-Offset') ?? null,
      complete: req.getHeader('Upload-Complete') ?? null,
      version: req.getHeader('Upload-Draft-Interop-Version') ?? null })
  },
  onProgress(sent) {
    if (stopAfter > 0 && sent >= stopAfter && !stopped && upload.url) {
      stopped = true
      upload.abort().then(() => {
        process.stdout.write(`${JSON.stringify({ url: upload.url, done: false, requests })}\n`)
        process.exit(0)
      })
    }
  },
  onError(error) {
    console.error(`tus-js-client failed: ${error}`)
    process.exit(1)
  },
  onSuccess() {
    process.stdout.write(`${JSON.stringify({ url: upload.url, done: true, requests })}\n`)
  },
}
if (uploadUrl) options.uploadUrl = uploadUrl
const upload = new tus.Upload(fs.createReadStream(file), options)
upload.start()
