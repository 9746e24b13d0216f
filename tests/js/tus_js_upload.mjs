// Upload one file with the real tus-js-client in Node, for tests/test_tus_js_client.py.
//
//   node tests/js/tus_js_upload.mjs <endpoint> <file> <parallelUploads> <chunkSize> [uploadUrl]
//
// chunkSize 0 means one PATCH per upload (or per part). With an uploadUrl the client resumes that
// upload (HEAD, then PATCH from the server's offset) instead of creating one.
// The file is given to tus-js-client as an fs.ReadStream: its Node FileSource then opens a new
// ranged read stream per PATCH body (and per part with parallelUploads), so the file is never
// held in memory whole. On success one JSON line goes to stdout:
//   {"url": ..., "requests": [{"method", "url", "offset", "concat"}, ...]}
// On failure the error goes to stderr and the exit status is 1.
import fs from 'node:fs'
import path from 'node:path'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const tus = require('tus-js-client')

const [endpoint, file, parallelArg, chunkArg, uploadUrl] = process.argv.slice(2)
if (!endpoint || !file) {
  console.error('usage: tus_js_upload.mjs <endpoint> <file> <parallelUploads> <chunkSize> [uploadUrl]')
  process.exit(2)
}
const parallelUploads = Number(parallelArg || 1)
const chunkSize = Number(chunkArg || 0) || Infinity

const requests = []
const options = {
  endpoint,
  chunkSize,
  parallelUploads,
  // A failure must fail the test, not be retried into a pass.
  retryDelays: null,
  metadata: { filename: path.basename(file), filetype: 'application/octet-stream' },
  onBeforeRequest(req) {
    requests.push({
      method: req.getMethod(),
      url: req.getURL(),
      offset: req.getHeader('Upload-Offset') ?? null,
      concat: req.getHeader('Upload-Concat') ?? null,
    })
  },
  onError(error) {
    console.error(`tus-js-client failed: ${error}`)
    process.exit(1)
  },
  onSuccess() {
    process.stdout.write(`${JSON.stringify({ url: upload.url, requests })}\n`)
  },
}
if (uploadUrl) options.uploadUrl = uploadUrl

const upload = new tus.Upload(fs.createReadStream(file), options)
upload.start()
