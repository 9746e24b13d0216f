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

// The account a token names (its `sub`), read from its payload only to say so on the page: the
// server verifies the token, and a forged `sub` fails there.
export function tokenOwner (token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')
    const bytes = Uint8Array.from(atob(payload), (c) => c.charCodeAt(0))
    const sub = JSON.parse(new TextDecoder().decode(bytes)).sub
    return typeof sub === 'string' ? sub : ''
  } catch {
    return ''
  }
}

function named (token) {
  const owner = tokenOwner(token)
  return owner ? `“${owner}”` : 'an account this page cannot read from it'
}

// A link `…/#token=eyJ…` offers a token; it is removed from the address bar (not bookmarked or
// shared along with the URL) and returned, not used: a link anyone can send would otherwise
// make this page upload into the sender's account (login CSRF), so `setupToken` asks first.
export function takeTokenFromUrl () {
  const params = new URLSearchParams(window.location.hash.slice(1))
  const token = (params.get('token') || '').trim()
  if (!token) return ''
  params.delete('token')
  const rest = params.toString()
  window.history.replaceState(null, '', window.location.pathname + window.location.search + (rest ? `#${rest}` : ''))
  return token
}

// The token card: shown only when the server needs a token. `onChange` runs after the token was
// set or forgotten (the lists are then fetched again, as the new token's owner). `offered` is a
// token from a link: used only once the user says so, after being told whose it is.
export function setupToken (cfg, onChange, offered = '') {
  if (cfg.auth !== 'jwt') return
  $('token-card').hidden = false
  const describe = () => {
    const token = currentToken()
    $('token-status').textContent = token
      ? `A token is set for this tab, as ${named(token)}. Uploads and the lists below are that account's only.`
      : 'This server needs an access token: paste the one you were given.'
  }
  const use = (token) => {
    saveToken(token)
    describe()
    onChange()
  }
  describe()
  if (offered && offered !== currentToken()) {
    $('token-offer-text').textContent = `This link carries an access token for ${named(offered)}. ` +
      'With it, your uploads go to that account and the lists show its files. Use it only if ' +
      'you asked for this link.'
    $('token-offer').hidden = false
    const answered = () => { $('token-offer').hidden = true }
    $('token-offer-use').addEventListener('click', () => { answered(); use(offered) }, { once: true })
    $('token-offer-ignore').addEventListener('click', answered, { once: true })
  }
  $('token-form').addEventListener('submit', (event) => {
    event.preventDefault()
    const token = $('token').value.trim().replace(/^Bearer\s+/i, '')
    if (!token) return
    $('token').value = ''
    use(token)
  })
  $('forget-token').addEventListener('click', () => use(''))
}
