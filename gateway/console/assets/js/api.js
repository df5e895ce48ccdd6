// The admin API as the console calls it. The admin token is asked once and kept in this
// tab's sessionStorage only; every request that changes something is a POST or DELETE
// with a JSON body (when it has one) and the X-Fanout-CSRF header, which the admin port
// requires of state-changing requests made by a browser.

const TOKEN_KEY = 'fanout.admin-token';

export class ApiError extends Error {
  constructor(status, message, param) {
    super(message);
    this.status = status;
    this.param = param;
  }
}

let askToken = null;
let asking = null;

// onTokenNeeded sets how a token is asked for: fn(wrongToken) resolves to the new token.
export function onTokenNeeded(fn) { askToken = fn; }

export function hasToken() { return !!sessionStorage.getItem(TOKEN_KEY); }

export function forgetToken() { sessionStorage.removeItem(TOKEN_KEY); }

async function newToken(wrong) {
  if (!asking) {
    asking = askToken(wrong).then(t => { sessionStorage.setItem(TOKEN_KEY, t); }).finally(() => { asking = null; });
  }
  return asking;
}

// request calls the admin API and returns the decoded JSON answer (or the text, for the
// endpoints that answer text). A 401 asks for the token and tries again.
export async function request(method, path, body) {
  for (;;) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = {Accept: 'application/json'};
    if (token) headers.Authorization = 'Bearer ' + token;
    const init = {method, headers, credentials: 'omit', cache: 'no-store', redirect: 'error'};
    if (method !== 'GET' && method !== 'HEAD') headers['X-Fanout-CSRF'] = '1';
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, `cannot reach the admin port (${e.message})`);
    }
    if (resp.status === 401 && askToken) {
      await newToken(!!token);
      continue;
    }
    const text = await resp.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = null; }
    if (!resp.ok) {
      const msg = (data && data.error) || text.trim() || resp.statusText;
      throw new ApiError(resp.status, msg, data && data.param);
    }
    return data !== null ? data : text;
  }
}

export const get = path => request('GET', path);
export const post = (path, body) => request('POST', path, body === undefined ? {} : body);
export const del = path => request('DELETE', path);

// query builds "?a=1&b=2" from the non-empty values of params.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? '?' + s : '';
}
