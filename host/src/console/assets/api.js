// Talks to the host's /api routes with the admin key the operator signed in with. The key
// lives in sessionStorage (gone when the tab closes) and travels only in the Authorization
// header: no cookie (so no CSRF), never in a URL.

const KEY_STORAGE_NAME = 'connector-host.admin-key';

/** An error answer from the API, in the host's shape `{code, message, data?}`. */
export class ApiError extends Error {
  constructor(status, body, retryAfterSeconds) {
    super(body && typeof body.message === 'string' ? body.message : `The host answered ${status}.`);
    this.status = status;
    this.code = body && typeof body.code === 'string' ? body.code : 'unknown';
    this.data = body && typeof body.data === 'object' ? body.data : null;
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

export function storedAdminKey() {
  return sessionStorage.getItem(KEY_STORAGE_NAME);
}

export function storeAdminKey(key) {
  sessionStorage.setItem(KEY_STORAGE_NAME, key);
}

export function forgetAdminKey() {
  sessionStorage.removeItem(KEY_STORAGE_NAME);
}

let onUnauthorized = () => {};
/** What to do when the key stops working (revoked, host restarted with other keys). */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

async function send(method, path, { body, key = storedAdminKey(), accept = 'application/json' } = {}) {
  const headers = { Accept: accept };
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch (error) {
    throw new ApiError(0, { code: 'network', message: `The host did not answer (${error.message}). Is it still running?` });
  }
  if (response.ok) return response;
  const text = await response.text();
  let errorBody = null;
  try {
    errorBody = JSON.parse(text);
  } catch {
    errorBody = { code: 'unknown', message: `The host answered ${response.status} ${response.statusText}.` };
  }
  const retryAfter = Number.parseInt(response.headers.get('Retry-After') || '', 10);
  const error = new ApiError(response.status, errorBody, Number.isFinite(retryAfter) ? retryAfter : null);
  if (response.status === 401 && key === storedAdminKey()) onUnauthorized(error);
  throw error;
}

/** A JSON request; resolves to the parsed body, or null for 204. Throws ApiError. */
export async function api(method, path, body) {
  const response = await send(method, path, { body });
  if (response.status === 204) return null;
  return response.json();
}

/** A request that answers text (the sanitized README). */
export async function apiText(path) {
  const response = await send('GET', path, { accept: 'text/html' });
  return response.text();
}

/** Checks a key before keeping it: the admin-only factories list must answer. */
export async function checkAdminKey(key) {
  await send('GET', '/api/connector-factories', { key });
}

/** `GET /health` (no key): the limits, such as how long a code lives. */
export async function hostHealth() {
  const response = await send('GET', '/health', { key: null });
  return response.json();
}

export const MASK = '******';
