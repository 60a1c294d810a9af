// Sign-in: the operator pastes an admin key. It is checked against an admin-only route before
// it is kept (in sessionStorage, for this tab only); a wrong key or a send key says so.

import { ApiError, checkAdminKey, storeAdminKey } from './api.js';
import { h, replaceChildren } from './dom.js';

export function renderSignIn(container, { message, onSignedIn }) {
  // The admin key is not a password to keep: a browser's own password manager offers to save
  // any type=password field it sees submitted, whatever `autocomplete` says, so this is a text
  // field masked by CSS (`.secret-input`: -webkit-text-security, in Chromium, Safari and
  // Firefox 114+), with `autocomplete="off"` and the hints the common password-manager
  // extensions honour (1Password, LastPass, Bitwarden, Dashlane) to leave it alone.
  const keyInput = h('input', {
    id: 'admin-key',
    type: 'text',
    class: 'secret-input',
    autocomplete: 'off',
    autocapitalize: 'off',
    autocorrect: 'off',
    spellcheck: 'false',
    required: true,
    'data-1p-ignore': true,
    'data-lpignore': 'true',
    'data-bwignore': 'true',
    'data-form-type': 'other',
    'aria-describedby': 'admin-key-hint sign-in-error',
  });
  const error = h('p', { id: 'sign-in-error', class: 'field-error', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit', class: 'button button-primary button-block' }, 'Sign in');
  const form = h('form', { class: 'sign-in-form', novalidate: true },
    h('label', { class: 'field-label', for: 'admin-key' }, 'Admin key'),
    keyInput,
    h('p', { id: 'admin-key-hint', class: 'field-description' },
      'The key the host printed when it first started (kept in ', h('code', {}, '<data>/admin-key'),
      '), or one passed with ', h('code', {}, '--admin-key'), '. It stays in this tab only and is sent as ',
      h('code', {}, 'Authorization: Bearer'), '.'),
    error,
    submit,
  );
  const showError = (text) => {
    error.hidden = !text;
    error.textContent = text || '';
    if (text) keyInput.setAttribute('aria-invalid', 'true');
    else keyInput.removeAttribute('aria-invalid');
  };
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const key = keyInput.value.trim();
    if (!key) {
      showError('Paste the admin key to sign in.');
      keyInput.focus();
      return;
    }
    submit.disabled = true;
    showError(null);
    try {
      await checkAdminKey(key);
      storeAdminKey(key);
      // Not left in the page after sign-in.
      keyInput.value = '';
      onSignedIn();
    } catch (failure) {
      if (failure instanceof ApiError && failure.status === 401) {
        showError('That key is not valid. Check for a missing character, or use the key in <data>/admin-key.');
      } else if (failure instanceof ApiError && failure.status === 403) {
        showError('That is a send key: it can only send messages and codes. The console needs an admin key.');
      } else {
        showError(failure.message);
      }
      keyInput.select();
      keyInput.focus();
    } finally {
      submit.disabled = false;
    }
  });
  replaceChildren(container,
    h('div', { class: 'sign-in' },
      h('div', { class: 'sign-in-card' },
        h('div', { class: 'sign-in-brand' }, h('img', { src: '/console/assets/favicon.svg', alt: '', width: 40, height: 40 }), h('span', {}, 'connector-host')),
        h('h1', {}, 'Sign in to the console'),
        message ? h('p', { class: 'notice', role: 'status' }, message) : null,
        form,
      ),
    ),
  );
  keyInput.focus();
}
