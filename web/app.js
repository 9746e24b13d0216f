// The tus-minio page: Uppy's Dashboard + Tus plugin, configured from GET /config, and the list
// of finished uploads from GET /files. Every piece of server or user text is put in the page
// with textContent, never as HTML.
import { Dashboard, GoldenRetriever, Tus, Uppy } from '../vendor/uppy/uppy.min.mjs'

const base = document.baseURI
const $ = (id) => document.getElementById(id)

// ------------------------------------------------------------------ formatting
const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB']

export function formatBytes (bytes) {
  if (bytes == null || !Number.isFinite(bytes)) return '?'
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024
    unit += 1
  }
  if (unit === 0) return `${bytes} B`
  const text = value < 10 ? value.toFixed(1) : value.toFixed(0)
  return `${text.replace(/\.0$/, '')} ${UNITS[unit]}`
}

function formatDuration (seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return ''
  if (seconds < 1) return 'less than a second'
  const s = Math.round(seconds)
  if (s < 60) return `${s} s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m} min ${s % 60} s`
  return `${Math.floor(m / 60)} h ${m % 60} min`
}

function formatPeriod (seconds) {
  const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`
  if (seconds % 86400 === 0) return plural(seconds / 86400, 'day')
  if (seconds % 3600 === 0) return plural(seconds / 3600, 'hour')
  if (seconds % 60 === 0) return plural(seconds / 60, 'minute')
  return plural(seconds, 'second')
}

function formatTypes (types) {
  return types.map((t) => (t.endsWith('/*') ? `${t.slice(0, -2)} files` : t)).join(', ')
}

function el (tag, props = {}, ...children) {
  const node = document.createElement(tag)
  for (const [key, value] of Object.entries(props)) {
    if (key === 'text') node.textContent = value
    else if (key === 'class') node.className = value
    else if (key.startsWith('data-')) node.setAttribute(key, value)
    else node[key] = value
  }
  for (const child of children) if (child != null) node.append(child)
  return node
}

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

// The server's own words (its error bodies are short plain text), else a generic reason.
function serverText (err) {
  const response = err?.originalResponse
  if (!response) return null
  const status = response.getStatus()
  const body = (response.getBody() || '').trim()
  if (!status) return null
  return body ? `the server refused it (${status}): ${body}` : `the server answered ${status}`
}

// ------------------------------------------------------------------ access token
// With access control on, every API request carries `Authorization: Bearer <token>`. The token
// lives in sessionStorage (this tab only, gone when it closes), so a reload keeps it and resumes
// uploads, but it is never written anywhere that outlives the session.
const TOKEN_KEY = 'tus-minio-token'

export function currentToken () {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || ''
  } catch {
    return ''
  }
}

function saveToken (token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token)
    else sessionStorage.removeItem(TOKEN_KEY)
  } catch { /* storage disabled: the token lasts as long as the page */ }
}

// A link `…/#token=eyJ…` hands a token to the page; it is taken once and removed from the
// address bar, so it is not bookmarked or shared along with the URL.
function takeTokenFromUrl () {
  const params = new URLSearchParams(window.location.hash.slice(1))
  const token = (params.get('token') || '').trim()
  if (!token) return
  saveToken(token)
  params.delete('token')
  const rest = params.toString()
  window.history.replaceState(null, '', window.location.pathname + window.location.search + (rest ? `#${rest}` : ''))
}

function authHeaders () {
  const token = currentToken()
  return token ? { Authorization: `Bearer ${token}` } : {}
}

class AccessError extends Error {}

function tokenProblem (status, body) {
  const reason = body ? `: ${body}` : ''
  return status === 401
    ? `Your access token is missing or was refused (401${reason}). Paste a valid token above.`
    : `Your access token does not allow this (403${reason}).`
}

function setupToken (cfg) {
  if (cfg.auth !== 'jwt') return
  $('token-card').hidden = false
  const describe = () => {
    $('token-status').textContent = currentToken()
      ? 'A token is set for this tab. Uploads and the list below are yours only.'
      : 'This server needs an access token: paste the one you were given.'
  }
  describe()
  $('token-form').addEventListener('submit', (event) => {
    event.preventDefault()
    const token = $('token').value.trim().replace(/^Bearer\s+/i, '')
    if (!token) return
    saveToken(token)
    $('token').value = ''
    describe()
    refreshUploads()
  })
  $('forget-token').addEventListener('click', () => {
    saveToken('')
    describe()
    refreshUploads()
  })
}

// ------------------------------------------------------------------ finished uploads
let nextPage = null

async function fetchUploads (url) {
  const response = await fetch(url, {
    headers: { Accept: 'application/json', ...authHeaders() },
    cache: 'no-store',
  })
  if (response.status === 401 || response.status === 403) {
    throw new AccessError(tokenProblem(response.status, (await response.text()).trim()))
  }
  if (!response.ok) throw new Error(`GET /files answered ${response.status}`)
  return response.json()
}

function safeHref (url) {
  try {
    const parsed = new URL(url, base)
    return parsed.protocol === 'http:' || parsed.protocol === 'https:' ? parsed.href : null
  } catch {
    return null
  }
}

function uploadRow (upload) {
  const name = upload.filename || upload.id
  const created = upload.created ? new Date(upload.created) : null
  const time = el('time', {
    text: created ? created.toLocaleString() : '',
    dateTime: upload.created || '',
  })
  const href = safeHref(upload.download_url)
  const link = el('a', { class: 'btn btn-small', text: 'Download', title: `Download ${name}` })
  if (href) {
    link.href = href
    link.setAttribute('download', '')
  }
  const remove = el('button', { type: 'button', class: 'btn btn-small btn-danger', text: 'Delete', title: `Delete ${name}` })
  remove.addEventListener('click', () => deleteUpload(upload, remove))

  return el('li', { class: 'upload', 'data-id': upload.id },
    el('div', { class: 'upload-main' },
      el('span', { class: 'upload-name', text: name, title: name }),
      el('span', { class: 'upload-meta' },
        el('span', { class: 'upload-size', text: formatBytes(upload.size) }),
        ' · ',
        time)),
    el('div', { class: 'upload-actions' }, link, remove))
}

function renderUploads (data, append) {
  const list = $('finished')
  if (!append) list.replaceChildren()
  const done = data.uploads.filter((u) => u.completed && u.download_url)
  for (const upload of done) list.append(uploadRow(upload))
  nextPage = data.next
  $('more').hidden = !nextPage
  const shown = list.children.length
  $('finished-status').textContent = shown === 0
    ? 'No finished uploads yet.'
    : `${shown} finished upload${shown === 1 ? '' : 's'}${nextPage ? ' (more on the next page)' : ''}.`
}

let refreshing = null
let refreshAgain = false

export function refreshUploads () {
  // One request at a time; a call during a request asks for one more pass after it, so an
  // upload that finished meanwhile is never missed.
  if (refreshing) {
    refreshAgain = true
    return refreshing
  }
  refreshing = (async () => {
    do {
      refreshAgain = false
      try {
        renderUploads(await fetchUploads(new URL('files?page=1&per_page=50', base)), false)
      } catch (err) {
        if (err instanceof AccessError) {
          $('finished').replaceChildren()
          $('more').hidden = true
        }
        $('finished-status').textContent = err instanceof AccessError
          ? err.message
          : `Could not load the list: ${err.message}`
      }
    } while (refreshAgain)
    refreshing = null
  })()
  return refreshing
}

async function deleteUpload (upload, button) {
  const name = upload.filename || upload.id
  if (!window.confirm(`Delete “${name}” from the server?`)) return
  button.disabled = true
  try {
    const response = await fetch(upload.url, {
      method: 'DELETE',
      headers: { 'Tus-Resumable': '1.0.0', ...authHeaders() },
    })
    if (response.status !== 204 && response.status !== 404 && response.status !== 410) {
      const body = (await response.text()).trim()
      throw new Error(`the server answered ${response.status}${body ? `: ${body}` : ''}`)
    }
  } catch (err) {
    showMessage(`Could not delete ${name}: ${err.message}`)
    button.disabled = false
    return
  }
  await refreshUploads()
}

// ------------------------------------------------------------------ per-file transfer line
const transfers = new Map() // file id -> {row, samples}

function transferRow (file) {
  let entry = transfers.get(file.id)
  if (!entry) {
    const bar = el('progress', { max: 100, value: 0 })
    const detail = el('span', { class: 'transfer-detail' })
    const row = el('li', { class: 'transfer', 'data-file': file.id },
      el('span', { class: 'transfer-name', text: file.name, title: file.name }), bar, detail)
    entry = { row, bar, detail, samples: [] }
    transfers.set(file.id, entry)
    $('transfers').append(row)
    $('transfers').hidden = false
  }
  return entry
}

function onProgress (file, progress) {
  const { bytesUploaded, bytesTotal } = progress
  if (!file || !bytesTotal) return
  const entry = transferRow(file)
  const now = performance.now()
  entry.samples.push([now, bytesUploaded])
  // Speed over the last five seconds, so a stall or a retry shows quickly.
  while (entry.samples.length > 2 && now - entry.samples[0][0] > 5000) entry.samples.shift()
  const [t0, b0] = entry.samples[0]
  const speed = now > t0 ? ((bytesUploaded - b0) * 1000) / (now - t0) : 0
  const percent = Math.floor((bytesUploaded / bytesTotal) * 100)
  entry.bar.value = percent
  const left = speed > 0 ? formatDuration((bytesTotal - bytesUploaded) / speed) : ''
  entry.detail.textContent = `${percent}% · ${formatBytes(bytesUploaded)} of ${formatBytes(bytesTotal)}` +
    (speed > 0 ? ` · ${formatBytes(speed)}/s` : '') + (left ? ` · ${left} left` : '')
}

function finishTransfer (file, text, kind) {
  const entry = transfers.get(file.id)
  if (!entry) return
  entry.row.classList.add(`transfer-${kind}`)
  entry.bar.value = kind === 'done' ? 100 : entry.bar.value
  entry.detail.textContent = text
}

// ------------------------------------------------------------------ start
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
  uppy.use(Dashboard, {
    target: '#uploader',
    inline: true,
    width: '100%',
    height: 380,
    theme: 'light',
    proudlyDisplayPoweredByUppy: false,
    hideProgressDetails: false,
    showRemoveButtonAfterComplete: true,
  })
  uppy.use(Tus, {
    endpoint,
    chunkSize: cfg.chunkSize,
    retryDelays: [0, 1000, 3000, 5000],
    storeFingerprintForResuming: true,
    removeFingerprintOnSuccess: true,
    limit: 3,
    allowedMetaFields: ['name', 'type'],
    // A function, so each upload (and each retry after a new token) sends the current token.
    headers: () => authHeaders(),
    onShouldRetry (err, attempt, options, next) {
      const status = err?.originalResponse?.getStatus()
      // A refusal will be the same next time: show it at once instead of retrying.
      if ([400, 401, 403, 413, 415, 429].includes(status)) return false
      return next(err)
    },
    onError (err) {
      const status = err?.originalResponse?.getStatus()
      const text = serverText(err)
      if (status === 401 || status === 403) {
        err.message = tokenProblem(status, (err.originalResponse.getBody() || '').trim()) +
          (status === 401 ? ' Then press Retry.' : '')
      } else if (text) err.message = text
      else if (!err?.originalResponse?.getStatus()) {
        err.message = 'the connection to the server was lost; press Retry to continue where it stopped'
      }
    },
  })
  // Files (up to Uppy's IndexedDB limit) and upload state survive a closed tab or a crash.
  uppy.use(GoldenRetriever, { serviceWorker: false })

  uppy.on('upload-progress', onProgress)
  uppy.on('upload-success', (file) => {
    finishTransfer(file, `Finished · ${formatBytes(file.size)}`, 'done')
    refreshUploads()
  })
  uppy.on('upload-error', (file, err) => {
    const reason = err?.message || 'unknown error'
    if (file) finishTransfer(file, `Failed: ${reason}`, 'failed')
    showMessage(`${file ? file.name : 'Upload'}: ${reason}`)
  })
  uppy.on('restriction-failed', (file, err) => {
    const reason = err.message.replace(/\.?$/, '.')
    showMessage(`${file ? `${file.name}: ` : ''}${reason} Nothing was sent.`)
  })
  uppy.on('file-removed', (file) => {
    const entry = transfers.get(file.id)
    if (entry) {
      entry.row.remove()
      transfers.delete(file.id)
      $('transfers').hidden = transfers.size === 0
    }
  })
  uppy.on('complete', () => refreshUploads())
  return uppy
}

async function main () {
  takeTokenFromUrl()
  $('refresh').addEventListener('click', () => refreshUploads())
  $('more').addEventListener('click', async () => {
    if (!nextPage) return
    try {
      renderUploads(await fetchUploads(nextPage), true)
    } catch (err) {
      $('finished-status').textContent = `Could not load more: ${err.message}`
    }
  })
  refreshUploads()
  let cfg
  try {
    cfg = await loadConfig()
  } catch (err) {
    $('limits').textContent = `The upload server is not reachable (${err.message}). Reload to try again.`
    document.body.dataset.ready = 'error'
    return
  }
  setupToken(cfg)
  $('limits').textContent = describeLimits(cfg)
  window.tusMinio = { config: cfg, uppy: startUppy(cfg), refreshUploads }
  document.body.dataset.ready = 'true'
}

main()
