// Small helpers to build the page. Vendor-supplied strings (names, labels, descriptions,
// error messages) only ever become text nodes or attribute values here: `h` never parses
// markup. The one exception is `insertSanitizedHtml`, for the README the server rendered and
// sanitized.

/** Creates an element. `attributes`: `class`, `for`, `on<event>` handlers, booleans, text. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === 'class') {
      element.className = value;
    } else if (name === 'for') {
      element.htmlFor = value;
    } else if (name === 'value') {
      element.value = value;
    } else if (name === 'checked' || name === 'disabled' || name === 'hidden' || name === 'required') {
      element[name] = Boolean(value);
    } else if (value === true) {
      element.setAttribute(name, '');
    } else {
      element.setAttribute(name, String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function replaceChildren(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

/**
 * Inserts HTML that the server rendered from a vendor README and sanitized with ammonia (no
 * script, no handlers, no foreign URLs). The page's Content-Security-Policy forbids inline
 * script as a second line of defence. Nothing else is ever inserted as markup.
 */
export function insertSanitizedHtml(container, serverSanitizedHtml) {
  container.innerHTML = serverSanitizedHtml;
}

let nextId = 0;
/** A unique element id, never derived from vendor data. */
export function uniqueId(prefix) {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

/** Text in the reader's language from a `{en: "...", "de": "..."}` map; English otherwise. */
export function localized(text) {
  if (typeof text === 'string') return text;
  if (!text || typeof text !== 'object') return '';
  const languages = [...(navigator.languages || []), navigator.language || '']
    .filter(Boolean)
    .flatMap((tag) => [tag, tag.split('-')[0]]);
  for (const language of languages) {
    if (typeof text[language] === 'string' && text[language].trim()) return text[language];
  }
  return typeof text.en === 'string' ? text.en : Object.values(text).find((v) => typeof v === 'string') || '';
}

const IMAGE_DATA_URL = /^data:image\/(svg\+xml|png|jpeg|gif|webp)(;[a-z0-9=.+-]+)*(;base64)?,/i;

/**
 * An `src` for a vendor logo: a `data:image/...` URI as given, SVG text as a base64 data URI
 * (an SVG shown through `<img>` runs no script and loads nothing), anything else (a URL to
 * another host, markup that is not SVG) refused, so the console never calls out.
 */
export function logoSource(logo) {
  if (typeof logo !== 'string') return null;
  const trimmed = logo.trim();
  if (IMAGE_DATA_URL.test(trimmed)) return trimmed;
  if (/^(<\?xml[^>]*>\s*)?<svg[\s>]/i.test(trimmed)) {
    const bytes = new TextEncoder().encode(trimmed);
    let binary = '';
    for (const byte of bytes) binary += String.fromCharCode(byte);
    return `data:image/svg+xml;base64,${btoa(binary)}`;
  }
  return null;
}

/** The factory's logo, or a neutral SMS tile (a letter read as a brand it is not). */
export function logoImage(logo, name, size = 40) {
  const source = logoSource(logo) || '/console/assets/sms-placeholder.svg';
  return h('img', { class: 'logo', src: source, alt: '', width: size, height: size });
}

/** A small "Copy" button that puts `text` on the clipboard and says so. */
export function copyButton(text, what) {
  const button = h('button', { type: 'button', class: 'button button-small copy-button', 'aria-label': `Copy ${what}` }, 'Copy');
  button.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(text);
      notify(`Copied the ${what}.`);
    } catch {
      notify(`Could not copy the ${what}; select it and copy it by hand.`, 'error');
    }
  });
  return button;
}

/** A small coloured label. */
export function badge(text, kind = 'neutral') {
  return h('span', { class: `badge badge-${kind}` }, text);
}

/** A time in the reader's locale, from milliseconds since the epoch. */
export function formatTime(milliseconds) {
  if (typeof milliseconds !== 'number') return '';
  return new Date(milliseconds).toLocaleString();
}

/** A status line for screen readers and sighted users alike. */
export function liveRegion(className = 'status-line') {
  return h('p', { class: className, role: 'status', 'aria-live': 'polite' });
}

/** A short-lived message in the corner, announced politely. */
export function notify(message, kind = 'success') {
  const region = document.getElementById('toasts');
  if (!region) return;
  const toast = h('div', { class: `toast toast-${kind}` }, message);
  region.append(toast);
  setTimeout(() => toast.remove(), kind === 'error' ? 8000 : 4000);
}

/** The host's lower-case messages as sentences for display: "too many ..." → "Too many ... ." */
export function asSentence(message) {
  const text = String(message ?? '').trim();
  if (!text) return text;
  const capitalized = /^[a-z]/.test(text) ? text[0].toUpperCase() + text.slice(1) : text;
  return /[.!?]$/.test(capitalized) ? capitalized : `${capitalized}.`;
}

/** A spinner line while something loads. */
export function loading(text = 'Loading…') {
  return h('p', { class: 'loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), text);
}
