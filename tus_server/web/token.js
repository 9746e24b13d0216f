// The access token, when the server's /config says `auth: "jwt"`. Every API request then carries
// `Authorization: Bearer <token>`. The token lives in sessionStorage: this tab only, so a reload
// keeps it (and uploads can be resumed), and it is gone when the tab closes.
const KEY = 'tus-minio-token'
const $ = (id) => document.getElementById(id)

export function currentToken () {
  try {
    return sessionStorage.getItem(KEY) || ''
  } catch {
    return ''
  }
}

function saveToken (token) {
  try {
    if (token) sessionStorage.setItem(KEY, token)
    else sessionStorage.removeItem(KEY)
  } catch { /* storage disabled: nothing to keep it in */ }
}

export function authHeaders () {
  const token = currentToken()
  return token ? { Authorization: `Bearer ${token}` } : {}
}

// A link `…/#token=eyJ…` hands a token to the page; it is taken once and removed from the
// address bar, so it is not bookmarked or shared along with the URL.
export function takeTokenFromUrl () {
  const params = new URLSearchParams(window.location.hash.slice(1))
  const token = (params.get('token') || '').trim()
  if (!token) return
  saveToken(token)
  params.delete('token')
  const rest = params.toString()
  window.history.replaceState(null, '', window.location.pathname + window.location.search + (rest ? `#${rest}` : ''))
}

// The token card: shown only when the server needs a token. `onChange` runs after the token was
// set or forgotten (the lists are then fetched again, as the new token's owner).
export function setupToken (cfg, onChange) {
  if (cfg.auth !== 'jwt') return
  $('token-card').hidden = false
  const describe = () => {
    $('token-status').textContent = currentToken()
      ? 'A token is set for this tab. Uploads and the lists below are yours only.'
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
    onChange()
  })
  $('forget-token').addEventListener('click', () => {
    saveToken('')
    describe()
    onChange()
  })
}
