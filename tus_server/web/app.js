// The tus-minio page: Uppy's Dashboard to pick files and its Tus plugin to send them, configured
// from GET /config; the lists of unfinished and finished uploads are in lists.js. Every piece of
// server or user text is put in the page with textContent, never as HTML. The access token
// (when the server needs one) is in token.js.
import { Dashboard, Tus, Uppy } from '../vendor/uppy/uppy.min.mjs'
import { describeStatus, el, formatBytes, formatPeriod, formatTypes } from './format.js'
import { localProgress, localState, refreshUploads, setNote, startLists } from './lists.js'
import { authHeaders, setupToken, takeTokenFromUrl } from './token.js'

const base = document.baseURI
const $ = (id) => document.getElementById(id)

// ------------------------------------------------------------------ messages
const MAX_MESSAGES = 6

function showMessage (text, kind = 'error') {
  const list = $('messages')
  const close = el('button', { type: 'button', class: 'msg-close', text: '×', title: 'Dismiss' })
  const item = el('li', { class: `msg msg-${kind}` }, el('span', { class: 'msg-text', text }), close)
  close.addEventListener('click', () => item.remove())
  list.prepend(item)
  while (list.children.length > MAX_MESSAGES) list.lastElementChild.remove()
}

// ------------------------------------------------------------------ limits
async function loadConfig () {
  const response = await fetch(new URL('config', base), { cache: 'no-store' })
  if (!response.ok) throw new Error(`GET /config answered ${response.status}`)
  return response.json()
}

function describeLimits (cfg) {
  const parts = []
  parts.push(cfg.maxSize ? `Files up to ${formatBytes(cfg.maxSize)}` : 'Files of any size')
  if (cfg.allowedTypes.length) parts.push(`only ${formatTypes(cfg.allowedTypes)}`)
  parts.push(`sent in ${formatBytes(cfg.chunkSize)} pieces`)
  if (cfg.expiration) parts.push(`unfinished uploads are kept ${formatPeriod(cfg.expiration)}`)
  return `${parts.join(' · ')}.`
}

// Which limit a file broke, in the page's units, before anything is sent.
function describeRestriction (cfg, file, err) {
  if (file && cfg.maxSize && file.size > cfg.maxSize) {
    return `${file.name} is ${formatBytes(file.size)}, over this server's limit of ` +
      `${formatBytes(cfg.maxSize)} per file. Nothing was sent.`
  }
  const type = (file?.type || '').split(';')[0].trim().toLowerCase()
  const typeAllowed = cfg.allowedTypes.some((t) => (t.endsWith('/*') ? type.startsWith(t.slice(0, -1)) : type === t))
  if (file && cfg.allowedTypes.length && !typeAllowed) {
    return `${file.name} is of type ${file.type || 'unknown'}; this server accepts only ` +
      `${formatTypes(cfg.allowedTypes)}. Nothing was sent.`
  }
  return `${file ? `${file.name}: ` : ''}${err.message.replace(/\.?$/, '.')} Nothing was sent.`
}

// ------------------------------------------------------------------ the uploader
const STOP_STATUSES = [400, 401, 403, 404, 409, 410, 413, 415, 429]

function startUppy (cfg) {
  const endpoint = new URL(cfg.endpoint, base).href
  const uppy = new Uppy({
    id: 'tus-minio',
    autoProceed: false,
    restrictions: {
      maxFileSize: cfg.maxSize || null,
      allowedFileTypes: cfg.allowedTypes.length ? cfg.allowedTypes : null,
    },
  })
  // The Dashboard picks files; progress is shown once, in the unfinished list (lists.js), in
  // the page's units, so its own status bar is off.
  uppy.use(Dashboard, {
    target: '#uploader',
    inline: true,
    width: '100%',
    height: 320,
    theme: 'light',
    proudlyDisplayPoweredByUppy: false,
    disableStatusBar: true,
    showRemoveButtonAfterComplete: true,
  })
  uppy.use(Tus, {
    endpoint,
    chunkSize: cfg.chunkSize,
    // Storage outages (503) are retried for about a minute and a half.
    retryDelays: [0, 1000, 3000, 5000, 10000, 10000, 20000, 30000],
    storeFingerprintForResuming: true,
    removeFingerprintOnSuccess: true,
    limit: 3,
    allowedMetaFields: ['name', 'type'],
    // A function: read each time an upload starts or is retried, so after a refusal the token
    // pasted since is the one sent.
    headers: () => authHeaders(),
    async onBeforeRequest (req, file) {
      // A resumed upload continues at the server's offset or not at all: never a new upload.
      if (file?.meta?.resumeOf && req.getMethod() === 'POST') {
        throw new Error('the upload is no longer on the server (it may have expired); add the file again to start over')
      }
    },
    onShouldRetry (err, attempt, options, next) {
      const status = err?.originalResponse?.getStatus()
      // A refusal will be the same next time: show it at once instead of retrying.
      if (STOP_STATUSES.includes(status)) return false
      if (status === 503) {
        // The failing request names its upload; a refused creation has no upload yet.
        const url = err.originalRequest?.getURL()
        const file = uppy.getFiles().find((f) => f.tus?.uploadUrl && f.tus.uploadUrl === url)
        if (file) localState(file, 'uploading', 'storage unavailable, retrying', url)
        else showMessage('Storage unavailable, retrying…', 'info')
        return true
      }
      return next(err)
    },
    onError (err) {
      const response = err?.originalResponse
      const status = response?.getStatus()
      if (status) {
        err.message = describeStatus(status, response.getBody(), cfg)
        if (status === 401 && cfg.auth) err.message += ', then press Retry'
      }
      else if (!/no longer on the server/.test(err.message)) {
        err.message = 'the connection to the server was lost; press Retry to continue where it stopped'
      }
    },
  })

  const urlOf = (file) => uppy.getFile(file.id)?.tus?.uploadUrl || file.meta?.resumeOf
  uppy.on('upload-progress', (file, progress) => {
    if (file && progress.bytesTotal) localProgress(file, progress.bytesUploaded, progress.bytesTotal, urlOf(file))
  })
  uppy.on('upload-success', (file) => {
    localState(file, 'done', null, urlOf(file))
    refreshUploads()
  })
  uppy.on('upload-error', (file, err) => {
    const reason = err?.message || 'unknown error'
    if (file) localState(file, 'failed', `Failed: ${reason}`, urlOf(file))
    showMessage(`${file ? file.name : 'Upload'}: ${reason}`)
  })
  uppy.on('restriction-failed', (file, err) => showMessage(describeRestriction(cfg, file, err)))
  uppy.on('file-removed', (file) => {
    localState(file, 'removed')
    refreshUploads()
  })
  for (const event of ['files-added', 'file-removed', 'upload', 'complete', 'upload-error', 'upload-success']) {
    uppy.on(event, () => updateStartButton(uppy))
  }
  uppy.on('complete', () => refreshUploads())
  $('start').addEventListener('click', () => startUpload(uppy))
  updateStartButton(uppy)
  return uppy
}

function pendingFiles (uppy) {
  return uppy.getFiles().filter((f) => !f.progress?.uploadComplete && (!f.progress?.uploadStarted || f.error))
}

function updateStartButton (uppy) {
  const pending = pendingFiles(uppy)
  const button = $('start')
  button.disabled = pending.length === 0
  const failed = pending.filter((f) => f.error).length
  button.textContent = failed && failed === pending.length ? 'Retry'
    : `Upload${pending.length > 1 ? ` ${pending.length} files` : ''}`
}

function startUpload (uppy) {
  if (uppy.getFiles().some((f) => f.error)) uppy.retryAll()
  uppy.upload().catch(() => {}) // failures arrive as upload-error events
  updateStartButton(uppy)
}

// ------------------------------------------------------------------ resume after a closed tab
// The browser cannot reopen a file by itself: the user picks it again, and it must be the same
// file (name and size) before a byte is sent; the upload then continues at the server's offset.
function resumeWith (uppy, cfg) {
  const input = el('input', { type: 'file', hidden: true, id: 'resume-input' })
  document.body.append(input)
  let target = null
  input.addEventListener('change', async () => {
    const file = input.files[0]
    input.value = ''
    if (!file || !target) return
    const upload = target
    const wanted = `“${upload.filename}” (${formatBytes(upload.size)})`
    if (file.name !== upload.filename || file.size !== upload.size) {
      setNote(upload.url, `That is “${file.name}” (${formatBytes(file.size)}), not ${wanted}. ` +
        'Choose the same file to continue.', 'error')
      return
    }
    const head = await fetch(upload.url, {
      method: 'HEAD',
      headers: { 'Tus-Resumable': '1.0.0', ...authHeaders() },
      cache: 'no-store',
    }).catch(() => null)
    if (!head || !head.ok) {
      setNote(upload.url, head ? describeStatus(head.status, '', cfg) : 'the server is not reachable; try again', 'error')
      if (head) refreshUploads()
      return
    }
    setNote(upload.url, `Continuing from ${formatBytes(Number(head.headers.get('Upload-Offset')))}…`)
    let id
    try {
      id = uppy.addFile({ name: file.name, type: file.type, data: file, source: 'resume',
        meta: { resumeOf: upload.url } })
    } catch (err) {
      setNote(upload.url, `Could not add the file: ${err.message}`, 'error')
      return
    }
    uppy.setFileState(id, { tus: { uploadUrl: upload.url } })
    localProgress(uppy.getFile(id), Number(head.headers.get('Upload-Offset')), file.size, upload.url)
    setNote(upload.url, null)
    startUpload(uppy)
  })
  return (upload) => {
    target = upload
    setNote(upload.url, `Choose the same file to continue: ${upload.filename || upload.id} ` +
      `(${formatBytes(upload.size)}).`)
    input.click()
  }
}

// ------------------------------------------------------------------ start
async function main () {
  const offered = takeTokenFromUrl()
  let cfg
  try {
    cfg = await loadConfig()
  } catch (err) {
    $('limits').textContent = `The upload server is not reachable (${err.message}). Reload to try again.`
    startLists(null, { message: showMessage })
    document.body.dataset.ready = 'error'
    return
  }
  setupToken(cfg, () => refreshUploads(), offered)
  $('limits').textContent = describeLimits(cfg)
  const uppy = startUppy(cfg)
  await startLists(cfg, {
    message: showMessage,
    resume: resumeWith(uppy, cfg),
    retry: (fileId) => {
      uppy.retryUpload(fileId).catch(() => {})
    },
  })
  window.tusMinio = { config: cfg, uppy, refreshUploads }
  document.body.dataset.ready = 'true'
}

main()
