// The console's shell: sign-in state, the top bar and a hash router. Routes:
//   #/connectors                 Email and SMS connectors (the live one, Previous SMS connectors)
//   #/connectors/{id}            a connector's details
//   #/guide/{factoryId}[?replacing={id}]   the set-up guide (README left, form and test right)
//   #/messages                   the message log: recent messages, filters, each one's timeline
//   #/plugins                    the plugin files and Rescan
//   #/protection                 SMS-pumping protection: mode, blocks (Lift), countries, thresholds
// Each screen is one module exporting `render(container, params, context)`.

import { forgetAdminKey, hostHealth, setUnauthorizedHandler, storedAdminKey } from './api.js';
import { h, replaceChildren } from './dom.js';
import { confirmDialog } from './modal.js';
import { renderSignIn } from './sign-in-page.js';
import { renderConnectorsPage } from './connectors-page.js';
import { renderConnectorDetailsPage } from './connector-details-page.js';
import { renderGuidePage } from './guide-page.js';
import { renderMessagesPage } from './messages-page.js';
import { renderPluginsPage } from './plugins-page.js';
import { renderProtectionPage } from './protection-page.js';

const main = document.getElementById('main');
const topbar = document.getElementById('topbar');
const skipLink = document.querySelector('.skip-link');

/** Set by a screen with unsaved edits; asked before leaving it. */
let unsavedChangesCheck = null;
let currentHash = null;
let ignoreNextHashChange = false;
let renderGeneration = 0;
let health = null;

const context = {
  navigate,
  /** A screen with a form registers `() => isDirty`; null clears it. */
  setUnsavedChangesCheck(check) {
    unsavedChangesCheck = check;
  },
  /** `GET /health` once: the code lifetime shown beside the templates. */
  async codeTimeToLiveSeconds() {
    if (!health) {
      try {
        health = await hostHealth();
      } catch {
        health = {};
      }
    }
    return health?.limits?.verificationCodes?.timeToLiveSeconds ?? 600;
  },
  signOut,
};

function parseHash(hash) {
  const [path, query = ''] = hash.replace(/^#/, '').split('?');
  const segments = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { segments, query: new URLSearchParams(query) };
}

async function mayLeave() {
  if (!unsavedChangesCheck || !unsavedChangesCheck()) return true;
  return confirmDialog({
    title: 'Discard unsaved changes?',
    message: 'You have edited this configuration without saving. Leaving now discards the edits.',
    confirmLabel: 'Discard and leave',
    danger: true,
  });
}

/** Goes to a route, asking first when the current screen has unsaved edits. */
export async function navigate(hash, { force = false } = {}) {
  if (!force && !(await mayLeave())) return;
  unsavedChangesCheck = null;
  if (window.location.hash === hash) {
    route();
  } else {
    ignoreNextHashChange = true;
    window.location.hash = hash;
    route();
  }
}

window.addEventListener('hashchange', async () => {
  if (ignoreNextHashChange) {
    ignoreNextHashChange = false;
    return;
  }
  // Back/forward or a typed URL: ask, and put the old address back when the answer is no.
  if (unsavedChangesCheck && unsavedChangesCheck()) {
    const target = window.location.hash;
    history.replaceState(null, '', currentHash || '#/connectors');
    if (!(await mayLeave())) return;
    unsavedChangesCheck = null;
    ignoreNextHashChange = true;
    window.location.hash = target;
  }
  route();
});

window.addEventListener('beforeunload', (event) => {
  if (unsavedChangesCheck && unsavedChangesCheck()) {
    event.preventDefault();
    event.returnValue = '';
  }
});

// Links inside the app go through navigate(), so the unsaved-changes question comes first.
document.addEventListener('click', (event) => {
  const link = event.target instanceof Element ? event.target.closest('a[href^="#/"]') : null;
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  event.preventDefault();
  navigate(link.getAttribute('href'));
});

function signOut(message) {
  // The screen being left is no longer current: the pages that refresh themselves (Plugins,
  // Protection, Messages) stop, instead of asking without a key and signing out again over
  // the form.
  renderGeneration += 1;
  forgetAdminKey();
  unsavedChangesCheck = null;
  for (const backdrop of document.querySelectorAll('.backdrop')) backdrop.remove();
  for (const element of document.body.children) element.inert = false;
  showSignIn(message);
}

function showSignIn(message) {
  topbar.hidden = true;
  topbar.inert = false;
  skipLink.inert = false;
  document.title = 'Sign in · connector-host console';
  renderSignIn(main, { message, onSignedIn: () => navigate(currentHash && !currentHash.startsWith('#/sign-in') ? currentHash : '#/connectors', { force: true }) });
}

setUnauthorizedHandler(() => signOut('Your admin key is no longer accepted (it may have been changed). Sign in again.'));
document.getElementById('sign-out').addEventListener('click', () => signOut('Signed out. The key was removed from this tab.'));

async function route() {
  const generation = ++renderGeneration;
  currentHash = window.location.hash || '#/connectors';
  if (!storedAdminKey()) {
    showSignIn();
    return;
  }
  topbar.hidden = false;
  const { segments, query } = parseHash(currentHash);
  const section = segments[0] || 'connectors';
  // The full-screen guide covers the top bar: out of reach of Tab and of clicks while it shows.
  const fullScreen = section === 'guide' && Boolean(segments[1]);
  topbar.inert = fullScreen;
  skipLink.inert = fullScreen;
  for (const link of topbar.querySelectorAll('[data-nav]')) {
    const active = link.dataset.nav === section || (section === 'guide' && link.dataset.nav === 'connectors');
    if (active) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const container = h('div', { class: `screen screen-${section}` });
  replaceChildren(main, container);
  const isCurrent = () => generation === renderGeneration;
  const screenContext = { ...context, isCurrent };
  try {
    if (section === 'connectors' && segments[1]) {
      await renderConnectorDetailsPage(container, { connectorId: segments[1] }, screenContext);
    } else if (section === 'guide' && segments[1]) {
      await renderGuidePage(container, { factoryId: segments[1], replacing: query.get('replacing') }, screenContext);
    } else if (section === 'messages') {
      await renderMessagesPage(container, {}, screenContext);
    } else if (section === 'plugins') {
      await renderPluginsPage(container, {}, screenContext);
    } else if (section === 'protection') {
      await renderProtectionPage(container, {}, screenContext);
    } else {
      if (section !== 'connectors') history.replaceState(null, '', '#/connectors');
      await renderConnectorsPage(container, {}, screenContext);
    }
  } catch (error) {
    if (!isCurrent() || !storedAdminKey()) return;
    // The host unreachable (restarting, offline): trying again is the way out.
    const offline = error && error.status === 0;
    replaceChildren(container, h('div', { class: 'notice notice-error', role: 'alert', 'data-testid': 'page-error' },
      h('p', {}, offline ? error.message : `This page could not be shown: ${error.message}`),
      h('div', { class: 'row-actions' },
        h('button', { type: 'button', class: 'button button-primary', onclick: () => route() }, 'Retry'),
        section === 'connectors' && !segments[1] ? null : h('a', { href: '#/connectors', class: 'button' }, 'Back to connectors'))));
  }
  if (isCurrent() && section !== 'guide') main.focus({ preventScroll: true });
}

route();
