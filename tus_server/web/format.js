// Formatting shared by the page's lists and the uploader: one unit system (binary, labelled
// KiB/MiB/GiB as the CLI and README use), the user's locale for dates, text-only DOM building.

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

export function formatDuration (seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return ''
  if (seconds < 1) return 'less than a second'
  const s = Math.round(seconds)
  if (s < 60) return `${s} s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m} min ${s % 60} s`
  return `${Math.floor(m / 60)} h ${m % 60} min`
}

export function formatPeriod (seconds) {
  const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`
  if (seconds % 86400 === 0) return plural(seconds / 86400, 'day')
  if (seconds % 3600 === 0) return plural(seconds / 3600, 'hour')
  if (seconds % 60 === 0) return plural(seconds / 60, 'minute')
  return plural(seconds, 'second')
}

export function formatTypes (types) {
  return types.map((t) => (t.endsWith('/*') ? `${t.slice(0, -2)} files` : t)).join(', ')
}

// A server timestamp (ISO 8601, UTC) in the user's own locale and time zone.
export function formatDate (iso) {
  if (!iso) return ''
  const date = new Date(iso)
  return Number.isNaN(date.getTime()) ? '' : date.toLocaleString()
}

export function el (tag, props = {}, ...children) {
  const node = document.createElement(tag)
  for (const [key, value] of Object.entries(props)) {
    if (key === 'text') node.textContent = value
    else if (key === 'class') node.className = value
    else if (key.startsWith('data-') || key.startsWith('aria-')) node.setAttribute(key, value)
    else node[key] = value
  }
  for (const child of children) if (child != null) node.append(child)
  return node
}

export function safeHref (url, base) {
  try {
    const parsed = new URL(url, base)
    return parsed.protocol === 'http:' || parsed.protocol === 'https:' ? parsed.href : null
  } catch {
    return null
  }
}

// A refusal of the access token (401) or of what it allows (403), with the server's reason.
export function accessProblem (status, body) {
  const text = (body || '').trim()
  const reason = text ? `: ${text}` : ''
  return status === 401
    ? `your access token is missing or was refused (401${reason}); paste a valid token above`
    : `your access token does not allow this (403${reason})`
}

// What a failed request means to the user, from its status: the server's own short text when it
// has one, with the action that helps.
export function describeStatus (status, body, cfg) {
  const text = (body || '').trim()
  if (cfg?.auth && (status === 401 || status === 403)) return accessProblem(status, text)
  if (status === 429) return `not accepted for now (429): ${text || 'too many uploads'}`
  if (status === 503) return 'storage unavailable, retrying'
  if (status === 410) {
    const kept = cfg?.expiration ? ` (unfinished uploads are kept ${formatPeriod(cfg.expiration)})` : ''
    return `this upload expired on the server${kept}; add the file again to start over`
  }
  if (status === 404) return 'this upload is no longer on the server; add the file again to start over'
  if (status === 413) return `too large for this server: ${text || 'size limit exceeded'}`
  if (status === 415) return `type not accepted by this server: ${text || 'file type refused'}`
  return text ? `the server refused it (${status}): ${text}` : `the server answered ${status}`
}
