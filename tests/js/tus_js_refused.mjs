// Resume an upload with the real tus-js-client in Node and report how its PATCH was refused,
// for tests/test_early_rejection.py.
//
//   node tests/js/tus_js_refused.mjs <uploadUrl> <file>
//
// Before its first PATCH the client prints `PAUSE` and waits for one line on stdin, so the
// test can change the upload (take its lock, move its offset) between the client's HEAD and
// its PATCH. No retries. One JSON line goes to stdout at the end:
//   {"ok": false, "status": <status the client saw or null>, "message": "<error text>"}
import fs from 'node:fs'
import readline from 'node:readline'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const tus = require('tus-js-client')

const [uploadUrl, file] = process.argv.slice(2)
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]()
let paused = false

function finish (result) {
  process.stdout.write(`${JSON.stringify(result)}\n`)
  process.exit(0)
}

const upload = new tus.Upload(fs.createReadStream(file), {
  uploadUrl,
  endpoint: uploadUrl,
  retryDelays: null,
  async onBeforeRequest (req) {
    if (req.getMethod() === 'PATCH' && !paused) {
      paused = true
      process.stdout.write('PAUSE\n')
      await lines.next()
    }
  },
  onError (error) {
    const status = error.originalResponse ? error.originalResponse.getStatus() : null
    finish({ ok: false, status, message: String(error) })
  },
  onSuccess () {
    finish({ ok: true, status: null, message: '' })
  },
})
upload.start()
