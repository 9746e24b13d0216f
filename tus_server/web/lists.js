// The two lists under the uploader, both from GET /files (so they show every device's uploads):
// unfinished uploads with a bar of the server's offset/length, Resume and Delete; finished ones
// with size, date, the server's SHA-256, Download, Copy link and Delete. Uploads running in this
// tab are shown in the same unfinished list, from the uploader's own progress, so each upload
// has one progress display. The list is polled while anything in it can still change. With
// access control on, the server lists only the token owner's uploads, and Download is a signed link.
import { accessProblem, describeStatus, el, formatBytes, formatDate, formatDuration, safeHref } from './format.js'
import { authHeaders } from './token.js'

const base = document.baseURI
const $ = (id) => document.getElementById(id)
const FAST_POLL = 2000 // ms, while an upload is unfinished or a digest is being computed
const SLOW_POLL = 15000

let cfg = null
let handlers = { resume: () => {}, retry: () => {}, message: () => {} }
let perPage = 50
let serverUploads = []
let pollTimer = null
let lastFailed = false
let refused = null // why the server refused the token, shown instead of the lists until it changes
const local = new Map() // Uppy file id -> {name, url, uploaded, total, samples, state, text}
// URLs this tab just finished: kept out of the unfinished list until the server's list (which
// may be a poll older) says they are finished, so a done upload does not flash back.
const justFinished = new Set()

export function startLists (config, callbacks) {
  cfg = config
  handlers = { ...handlers, ...callbacks }
  $('refresh').addEventListener('click', () => refreshUploads())
  $('more').addEventListener('click', () => {
    perPage = Math.min(perPage + 50, 500)
    refreshUploads()
  })
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) refreshUploads()
  })
  return refreshUploads()
}

// ------------------------------------------------------------------ fetching
let refreshing = null
let refreshAgain = false

export function refreshUploads () {
  // One request at a time; a call during one asks for one more pass after it, so an upload that
  // finished meanwhile is never missed.
  if (refreshing) {
    refreshAgain = true
    return refreshing
  }
  refreshing = (async () => {
    do {
      refreshAgain = false
      await fetchOnce()
    } while (refreshAgain)
    refreshing = null
    schedulePoll()
  })()
  return refreshing
}

async function fetchOnce () {
  lastFailed = true
  let response
  try {
    response = await fetch(new URL(`files?page=1&per_page=${perPage}`, base),
      { headers: { Accept: 'application/json', ...authHeaders() }, cache: 'no-store' })
  } catch (err) {
    setStatus('The server is not reachable; retrying…')
    return
  }
  if (response.status === 401 || response.status === 403) {
    // Asking again would get the same answer: nothing is shown, and nothing polled, until the
    // token changes (or Refresh is pressed).
    const text = accessProblem(response.status, await response.text())
    refused = `${text[0].toUpperCase()}${text.slice(1)}.`
    lastFailed = false
    serverUploads = []
    $('more').hidden = true
    render()
    return
  }
  refused = null
  if (!response.ok) {
    setStatus(response.status === 503 ? 'Storage unavailable, retrying…'
      : `Could not load the list: the server answered ${response.status}`)
    return
  }
  const data = await response.json()
  lastFailed = false
  serverUploads = data.uploads
  $('more').hidden = !data.next
  render()
}

function setStatus (text) {
  $('finished-status').textContent = text
  $('unfinished-status').textContent = text
}

function schedulePoll () {
  clearTimeout(pollTimer)
  if (refused) return
  const moving = serverUploads.some((u) => (!u.completed && u.concat !== 'partial') ||
    (u.completed && u.download_url && u.size && !u.sha256))
  pollTimer = setTimeout(() => {
    if (document.hidden) schedulePoll()
    else refreshUploads()
  }, moving || lastFailed || local.size ? FAST_POLL : SLOW_POLL)
}

// ------------------------------------------------------------------ this tab's uploads
export function localProgress (file, uploaded, total, url) {
  const entry = local.get(file.id) || { name: file.name, samples: [], state: 'uploading' }
  const now = performance.now()
  entry.samples.push([now, uploaded])
  // Speed over the last five seconds, so a stall or a retry shows quickly.
  while (entry.samples.length > 2 && now - entry.samples[0][0] > 5000) entry.samples.shift()
  Object.assign(entry, { uploaded, total, url: url || entry.url, state: 'uploading', text: null })
  local.set(file.id, entry)
  render()
}

export function localState (file, state, text, url) {
  const entry = local.get(file.id) || { name: file.name, samples: [], uploaded: 0, total: file.size }
  Object.assign(entry, { state, text, url: url || entry.url })
  if (state === 'done' && entry.url) justFinished.add(entry.url)
  if (state === 'done' || state === 'removed') local.delete(file.id)
  else local.set(file.id, entry)
  render()
}

function speedText (entry) {
  const [t0, b0] = entry.samples[0] || [0, 0]
  const [t1, b1] = entry.samples[entry.samples.length - 1] || [0, 0]
  const speed = t1 > t0 ? ((b1 - b0) * 1000) / (t1 - t0) : 0
  if (!(speed > 0)) return ''
  const left = formatDuration((entry.total - entry.uploaded) / speed)
  return ` · ${formatBytes(speed)}/s${left ? ` · ${left} left` : ''}`
}

// ------------------------------------------------------------------ rendering
function percent (done, total) {
  return total ? Math.floor((done / total) * 100) : 0
}

function unfinishedItems () {
  const items = []
  const localUrls = new Set()
  for (const [id, entry] of local) {
    if (entry.url) localUrls.add(entry.url)
    const total = entry.total || 0
    let detail = `${percent(entry.uploaded, total)}% · ${formatBytes(entry.uploaded)} of ${formatBytes(total)}`
    if (entry.state === 'uploading') detail += speedText(entry)
    if (entry.text) detail = `${detail} · ${entry.text}`
    items.push({ key: entry.url || `local:${id}`, name: entry.name, done: entry.uploaded, total, detail,
      kind: entry.state === 'failed' ? 'failed' : 'here', fileId: id })
  }
  const now = Date.now()
  for (const u of serverUploads) {
    if (u.completed) justFinished.delete(u.url)
    if (u.completed || u.concat === 'partial' || localUrls.has(u.url) || justFinished.has(u.url)) continue
    const expired = u.expires && Date.parse(u.expires) < now
    const stored = u.size == null ? `${formatBytes(u.offset)} stored, size not known yet`
      : `${percent(u.offset, u.size)}% · ${formatBytes(u.offset)} of ${formatBytes(u.size)} stored`
    const when = expired ? `expired ${formatDate(u.expires)}`
      : u.expires ? `kept until ${formatDate(u.expires)}` : ''
    items.push({ key: u.url, name: u.filename || u.id, done: u.offset, total: u.size, upload: u,
      detail: when ? `${stored} · ${when}` : stored, kind: expired ? 'expired' : 'server' })
  }
  return items
}

function render () {
  renderUnfinished(unfinishedItems())
  renderFinished(serverUploads.filter((u) => u.completed && u.download_url))
  if (refused) setStatus(refused)
}

const notes = new Map() // row key -> note text set by a Resume attempt

export function setNote (key, text, kind = 'info') {
  if (text) notes.set(key, { text, kind })
  else notes.delete(key)
  render()
}

function renderUnfinished (items) {
  const list = $('unfinished')
  const rows = new Map([...list.children].map((row) => [row.dataset.key, row]))
  items.forEach((item, index) => {
    let row = rows.get(item.key)
    if (!row || row.dataset.kind !== item.kind) {
      const fresh = unfinishedRow(item)
      if (row) row.replaceWith(fresh)
      row = fresh
    }
    rows.delete(item.key)
    row.querySelector('.upload-name').textContent = item.name
    row.querySelector('.upload-name').title = item.name
    const bar = row.querySelector('progress')
    bar.setAttribute('aria-label', `Progress of ${item.name}`)
    bar.max = item.total || 1
    bar.value = item.total ? Math.min(item.done, item.total) : 0
    row.querySelector('.upload-meta').textContent = item.detail
    const note = notes.get(item.key)
    const noteNode = row.querySelector('.upload-note')
    noteNode.textContent = note ? note.text : ''
    noteNode.className = `upload-note${note ? ` note-${note.kind}` : ''}`
    noteNode.hidden = !note
    if (list.children[index] !== row) list.insertBefore(row, list.children[index] || null)
  })
  for (const row of rows.values()) row.remove()
  $('unfinished-status').textContent = items.length === 0 ? 'No unfinished uploads.'
    : `${items.length} unfinished upload${items.length === 1 ? '' : 's'}.`
}

function unfinishedRow (item) {
  const name = item.name
  const actions = el('div', { class: 'upload-actions' })
  // A length the server does not know yet cannot be checked against the chosen file.
  if (item.kind === 'server' && item.total != null) {
    const resume = el('button', { type: 'button', class: 'btn btn-small', text: 'Resume', title: `Resume ${name}` })
    resume.addEventListener('click', () => handlers.resume(item.upload))
    actions.append(resume)
  }
  if (item.kind === 'failed') {
    const retry = el('button', { type: 'button', class: 'btn btn-small', text: 'Retry', title: `Retry ${name}` })
    retry.addEventListener('click', () => handlers.retry(item.fileId))
    actions.append(retry)
  }
  if (item.upload) {
    const remove = el('button', { type: 'button', class: 'btn btn-small btn-danger', text: 'Delete', title: `Delete ${name}` })
    remove.addEventListener('click', () => deleteUpload(item.upload, remove))
    actions.append(remove)
  }
  return el('li', { class: `upload upload-${item.kind}`, 'data-key': item.key, 'data-kind': item.kind },
    el('div', { class: 'upload-main' },
      el('span', { class: 'upload-name' }),
      el('progress', { class: 'upload-progress', max: 1, value: 0 }),
      el('span', { class: 'upload-meta' }),
      el('span', { class: 'upload-note', hidden: true, role: 'status' })),
    actions)
}

function renderFinished (uploads) {
  const list = $('finished')
  list.replaceChildren(...uploads.map(finishedRow))
  $('finished-status').textContent = uploads.length === 0 ? 'No finished uploads yet.'
    : `${uploads.length} finished upload${uploads.length === 1 ? '' : 's'}${$('more').hidden ? '' : ' (more below)'}.`
}

function finishedRow (upload) {
  const name = upload.filename || upload.id
  const href = safeHref(upload.download_url, base)
  const link = el('a', { class: 'btn btn-small', text: 'Download', title: `Download ${name}` })
  if (href) {
    link.href = href
    link.setAttribute('download', '')
  }
  const copy = el('button', { type: 'button', class: 'btn btn-small', text: 'Copy link', title: `Copy the link to ${name}` })
  copy.addEventListener('click', () => copyLink(href, copy))
  const remove = el('button', { type: 'button', class: 'btn btn-small btn-danger', text: 'Delete', title: `Delete ${name}` })
  remove.addEventListener('click', () => deleteUpload(upload, remove))
  const digest = upload.sha256 || (upload.size ? 'being computed…' : '')
  return el('li', { class: 'upload', 'data-id': upload.id },
    el('div', { class: 'upload-main' },
      el('span', { class: 'upload-name', text: name, title: name }),
      el('span', { class: 'upload-meta' },
        el('span', { class: 'upload-size', text: formatBytes(upload.size) }),
        ' · ',
        el('time', { text: formatDate(upload.created), dateTime: upload.created || '' })),
      digest ? el('span', { class: 'upload-sha' }, 'SHA-256 ',
        el('code', { text: digest, class: upload.sha256 ? 'sha256' : 'sha256-pending' })) : null),
    el('div', { class: 'upload-actions' }, link, copy, remove))
}

async function copyLink (href, button) {
  try {
    await navigator.clipboard.writeText(href)
    button.textContent = 'Copied'
    setTimeout(() => { button.textContent = 'Copy link' }, 2000)
  } catch {
    handlers.message(`Could not copy the link; here it is: ${href}`, 'info')
  }
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
      throw new Error(describeStatus(response.status, await response.text(), cfg))
    }
  } catch (err) {
    handlers.message(`Could not delete ${name}: ${err.message}`)
    button.disabled = false
    return
  }
  await refreshUploads()
}
