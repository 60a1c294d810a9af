// "Messages": the message log (GET /api/messages), newest first: time, connector, factory,
// purpose, the phone's last four digits and a status badge; filters by status and connector
// (GET /api/connectors for the choices), "Load more" through `before`, and a row's timeline
// (GET /api/messages/{id}) in a dialog, opened by a click or Enter. The list follows new
// messages and statuses every few seconds while the tab is visible, keeping the focus and
// the scroll. With the message log off (GET /api/messages/summary says so) the page says how
// to turn it on.

import { api } from './api.js';
import { asSentence, badge, formatTime, h, loading, localized, replaceChildren } from './dom.js';
import { openDialog } from './modal.js';
import { watchForChanges } from './page-refresh.js';

const PAGE_SIZE = 50;
/** The most one poll asks again: what was loaded past it keeps its last known state. */
const MAX_REFRESHED = 200;
const REFRESH_INTERVAL_MS = 3000;

const STATUSES = ['queued', 'sent', 'delivered', 'undelivered', 'failed', 'unknown'];
const STATUS_KINDS = { queued: 'neutral', sent: 'info', delivered: 'live', undelivered: 'error', failed: 'error', unknown: 'warning' };
const STATUS_MEANINGS = {
  queued: 'the provider accepted it',
  sent: 'the provider handed it to the carrier',
  delivered: 'the phone received it',
  undelivered: 'the carrier gave up (a wrong or unreachable number, expired)',
  failed: 'the provider or carrier refused it',
  unknown: 'the provider may or may not have it, or reported a status the connector could not place',
};
const PURPOSES = { message: 'Message', verification_code: 'Verification code', config_test: 'Console test' };
const SOURCES = { send: "The send's answer", report: 'Delivery report' };

/** The status as a badge; `null` (the send still in progress) as "sending". */
export function statusBadge(status) {
  if (typeof status !== 'string') return badge('sending', 'neutral');
  return badge(status, STATUS_KINDS[status] || 'neutral');
}

/** `***0123` (the API's form) as `••••0123`: only the last digits are ever kept. */
function phoneTail(phone) {
  const tail = String(phone ?? '').replace(/^\*+/, '');
  return `••••${tail}`;
}

function purposeLabel(purpose) {
  return PURPOSES[purpose] || String(purpose ?? '');
}

function connectorLabel(connectorId, connectorsById) {
  if (!connectorId) return 'Unsaved config (console test)';
  const connector = connectorsById.get(connectorId);
  return connector ? localized(connector.name) || connector.connectorId : connectorId;
}

function listPath(filters, { before, limit = PAGE_SIZE } = {}) {
  const query = new URLSearchParams();
  if (filters.status) query.set('status', filters.status);
  if (filters.connectorId) query.set('connectorId', filters.connectorId);
  if (before) query.set('before', before);
  query.set('limit', String(limit));
  return `/api/messages?${query}`;
}

export async function renderMessagesPage(container, _params, context) {
  document.title = 'Messages · connector-host console';
  replaceChildren(container, h('h1', {}, 'Messages'), loading());
  const filters = { status: '', connectorId: '' };
  const [page, live, retired, summary] = await Promise.all([
    api('GET', listPath(filters)),
    api('GET', '/api/connectors'),
    api('GET', '/api/connectors?enabled=false'),
    api('GET', '/api/messages/summary'),
  ]);
  if (!context.isCurrent()) return;
  const connectors = [...live, ...retired];
  const connectorsById = new Map(connectors.map((connector) => [connector.id, connector]));
  const messageLogOn = summary?.messageLog !== false;
  const deliveryReportsOn = summary?.deliveryReports !== false;

  let messages = page.messages;
  let nextBefore = page.nextBefore || null;
  // Bumped when the filters change: an answer for the old filters is dropped.
  let filterGeneration = 0;

  const statusSelect = h('select', { id: 'messages-status', 'data-testid': 'status-filter' },
    h('option', { value: '' }, 'All statuses'),
    STATUSES.map((status) => h('option', { value: status }, status)));
  const connectorSelect = h('select', { id: 'messages-connector', 'data-testid': 'connector-filter' },
    h('option', { value: '' }, 'All connectors'),
    connectors.map((connector) => h('option', { value: connector.id },
      `${localized(connector.name) || connector.connectorId} (${connector.id})${connector.enabled ? ', live' : ''}`)));
  const filtersForm = h('div', { class: 'messages-filters' },
    h('div', { class: 'field' }, h('label', { class: 'field-label', for: 'messages-status' }, 'Status'), statusSelect),
    h('div', { class: 'field' }, h('label', { class: 'field-label', for: 'messages-connector' }, 'Connector'), connectorSelect));

  const listHolder = h('div', { 'data-testid': 'messages-list' });
  const loadMore = h('button', { type: 'button', class: 'button', 'data-testid': 'load-more' }, 'Load more');
  const moreLine = h('div', { class: 'load-more-line' }, loadMore);
  const status = h('p', { class: 'refresh-line', role: 'status', 'aria-live': 'polite', 'data-testid': 'messages-status-line' });

  function drawList() {
    // The row with the focus keeps it across a redraw (by message id), else the list's
    // heading: never <body>.
    const focusedId = listHolder.contains(document.activeElement) ? document.activeElement.closest('[data-message-id]')?.dataset.messageId : null;
    replaceChildren(listHolder, messagesView(messages, { filters, connectorsById, messageLogOn, openTimeline }));
    moreLine.hidden = !nextBefore;
    if (focusedId) {
      const row = listHolder.querySelector(`[data-message-id="${CSS.escape(focusedId)}"]`);
      (row || heading).focus({ preventScroll: true });
    }
  }

  async function reloadForFilters() {
    const generation = ++filterGeneration;
    filters.status = statusSelect.value;
    filters.connectorId = connectorSelect.value;
    status.textContent = 'Loading…';
    try {
      const answer = await api('GET', listPath(filters));
      if (!context.isCurrent() || generation !== filterGeneration) return;
      messages = answer.messages;
      nextBefore = answer.nextBefore || null;
      drawList();
      status.textContent = messages.length === 0 ? 'No messages match.' : `${messages.length}${nextBefore ? '+' : ''} messages shown.`;
    } catch (error) {
      if (!context.isCurrent() || generation !== filterGeneration) return;
      status.textContent = `Could not load the messages: ${asSentence(error.message)}`;
    }
  }
  statusSelect.addEventListener('change', reloadForFilters);
  connectorSelect.addEventListener('change', reloadForFilters);

  loadMore.addEventListener('click', async () => {
    if (!nextBefore || loadMore.getAttribute('aria-disabled') === 'true') return;
    const generation = filterGeneration;
    loadMore.setAttribute('aria-disabled', 'true');
    loadMore.setAttribute('aria-busy', 'true');
    try {
      const answer = await api('GET', listPath(filters, { before: nextBefore }));
      if (!context.isCurrent() || generation !== filterGeneration) return;
      const known = new Set(messages.map((message) => message.id));
      const added = answer.messages.filter((message) => !known.has(message.id));
      messages = [...messages, ...added];
      nextBefore = answer.nextBefore || null;
      drawList();
      status.textContent = `${added.length} older messages loaded.`;
      // Keyboard users go on from the first newly shown row (the button may be gone).
      if (added.length > 0 && (document.activeElement === loadMore || document.activeElement === document.body)) {
        listHolder.querySelector(`[data-message-id="${CSS.escape(added[0].id)}"]`)?.focus();
      }
    } catch (error) {
      status.textContent = `Could not load more: ${asSentence(error.message)}`;
    } finally {
      loadMore.removeAttribute('aria-disabled');
      loadMore.removeAttribute('aria-busy');
    }
  });

  async function openTimeline(message, row) {
    row.focus({ preventScroll: true });
    const body = h('div', { 'data-testid': 'message-timeline-body' }, loading());
    const dialog = openDialog({
      title: `Message to ${phoneTail(message.phone)}`,
      body,
      testId: 'message-timeline',
    });
    try {
      const full = await api('GET', `/api/messages/${encodeURIComponent(message.id)}`);
      if (!document.contains(dialog.element)) return;
      replaceChildren(body, timelineView(full, connectorsById));
    } catch (error) {
      if (!document.contains(dialog.element)) return;
      const gone = error.status === 404;
      replaceChildren(body, h('p', { class: 'notice notice-error', role: 'alert' },
        gone ? 'This message is no longer in the message log: it is past its retention period (--message-retention-days).' : `The timeline could not be loaded: ${asSentence(error.message)}`));
    }
  }

  const heading = h('h2', { id: 'messages-heading', tabindex: '-1' }, 'Recent messages');
  replaceChildren(container,
    h('h1', {}, 'Messages'),
    messageLogOn ? (deliveryReportsOn ? null : deliveryReportsOffNotice()) : messageLogOffNotice(messages.length > 0),
    h('section', { class: 'card', 'aria-labelledby': 'messages-heading' },
      heading,
      h('p', { class: 'section-description' }, 'Every message and verification code this host sent, newest first, with its status as the provider reported it. Only the last four digits of each phone number are kept. Open a message for its timeline. This page follows new messages and delivery reports while it is in view.'),
      filtersForm,
      listHolder,
      moreLine,
      status));
  drawList();

  // New messages and statuses: the first page again (or as much as is shown, up to
  // MAX_REFRESHED), merged in front of what was loaded past it. Paused while a dialog is open.
  const shownLimit = () => Math.min(MAX_REFRESHED, Math.max(PAGE_SIZE, messages.length));
  watchForChanges(async () => {
    const generation = filterGeneration;
    const limit = shownLimit();
    const answer = await api('GET', listPath(filters, { limit }));
    return { generation, limit, answer };
  }, ({ generation, limit, answer }) => {
    if (generation !== filterGeneration) return;
    const fresh = answer.messages;
    if (fresh.length < limit) {
      // The whole list (for these filters) came back.
      messages = fresh;
      nextBefore = null;
    } else {
      const oldest = fresh[fresh.length - 1].id;
      // Ids are UUIDv7: they sort by time. What was loaded past the fresh answer stays.
      const pastFresh = messages.filter((message) => message.id < oldest);
      messages = [...fresh, ...pastFresh];
      // Only what came back is shown: the next page starts past it, if there was one.
      if (pastFresh.length === 0 && nextBefore !== null) nextBefore = oldest;
    }
    drawList();
  }, {
    initial: { generation: filterGeneration, limit: shownLimit(), answer: page },
    isActive: context.isCurrent,
    isPaused: () => document.querySelector('.backdrop') !== null,
    intervalMs: REFRESH_INTERVAL_MS,
  });
}

function messageLogOffNotice(hasOlderMessages) {
  return h('div', { class: 'notice notice-warning', 'data-testid': 'message-log-off' },
    h('p', { class: 'notice-title' }, 'The message log is off on this host.'),
    h('p', {}, hasOlderMessages
      ? 'New sends are not recorded, so they are not listed here; what is listed was recorded before it was turned off.'
      : 'Sends are not recorded, so there is nothing to list here.'),
    h('p', {}, 'To follow each message to delivered, start the host with ', h('code', {}, '--message-log on'),
      ', or with ', h('code', {}, '--public-url https://your-host.example'),
      ' (the address providers reach this host at), which turns the log on and asks providers for delivery reports.'));
}

function deliveryReportsOffNotice() {
  return h('div', { class: 'notice', 'data-testid': 'delivery-reports-off' },
    h('p', { class: 'notice-title' }, 'Providers are not asked for delivery reports.'),
    h('p', {}, 'Messages are recorded, but their status stays at what the send\'s answer said (queued, or failed): this host has no public address to give providers for their reports. Start it with ',
      h('code', {}, '--public-url https://your-host.example'), ', the address providers reach this host at, to follow each message to delivered.'));
}

function messagesView(messages, { filters, connectorsById, messageLogOn, openTimeline }) {
  if (messages.length === 0) {
    const filtered = filters.status || filters.connectorId;
    const text = filtered
      ? 'No messages match these filters. Choose "All statuses" and "All connectors" to see every message the log keeps.'
      : messageLogOn
        ? 'No messages yet. Each message and verification code this host sends appears here within a few seconds, with its status. Messages are kept for --message-retention-days (7 days unless set).'
        : 'No messages: the message log is off (see above).';
    return h('p', { class: 'empty-state', 'data-testid': 'messages-empty' }, text);
  }
  const columns = [
    ['Time', (message) => h('span', { class: 'nowrap' }, formatTime(message.createdAt))],
    ['Connector', (message) => h('div', {},
      h('span', { class: 'message-connector' }, connectorLabel(message.connectorId, connectorsById)),
      message.connectorId ? h('code', { class: 'message-connector-id' }, message.connectorId) : null)],
    ['Factory', (message) => h('code', {}, message.factoryId)],
    ['Purpose', (message) => purposeLabel(message.purpose)],
    ['Phone', (message) => h('span', { class: 'phone-tail' }, phoneTail(message.phone))],
    ['Status', (message) => statusBadge(message.status)],
  ];
  return h('div', { class: 'table-scroll' },
    h('table', { class: 'messages-table', 'data-testid': 'messages-table' },
      h('caption', { class: 'visually-hidden' }, 'Messages, newest first. Press Enter on a row to open its timeline.'),
      h('thead', {}, h('tr', {}, columns.map(([title]) => h('th', { scope: 'col' }, title)))),
      h('tbody', {}, messages.map((message) => {
        const row = h('tr', {
          class: 'message-row',
          tabindex: '0',
          'data-message-id': message.id,
          'data-status': message.status ?? 'sending',
          'aria-label': `${purposeLabel(message.purpose)} to ${phoneTail(message.phone)}, ${message.status ?? 'sending'}, ${formatTime(message.createdAt)}. Open its timeline.`,
          'aria-haspopup': 'dialog',
        }, columns.map(([title, cell]) => h('td', { 'data-label': title }, cell(message))));
        row.addEventListener('click', () => openTimeline(message, row));
        row.addEventListener('keydown', (event) => {
          if (event.target !== row || (event.key !== 'Enter' && event.key !== ' ')) return;
          event.preventDefault();
          openTimeline(message, row);
        });
        return row;
      }))));
}

function timelineView(message, connectorsById) {
  const details = [
    ['Status', [statusBadge(message.status), ' ', h('span', { class: 'status-meaning' }, message.status ? STATUS_MEANINGS[message.status] || '' : 'the send is in progress')]],
    ['Connector', [connectorLabel(message.connectorId, connectorsById), message.connectorId ? [' ', h('code', {}, message.connectorId)] : null]],
    ['Factory', h('code', {}, message.factoryId)],
    ['Purpose', purposeLabel(message.purpose)],
    ['Phone', phoneTail(message.phone)],
    ['Sent at', formatTime(message.createdAt)],
    ['Message ID', h('code', {}, message.id)],
    message.providerMessageId ? ['Provider message ID', h('code', {}, message.providerMessageId)] : null,
  ].filter(Boolean);
  const events = Array.isArray(message.events) ? message.events : [];
  return [
    h('dl', { class: 'message-details' }, details.map(([term, value]) => h('div', { class: 'message-detail' }, h('dt', {}, term), h('dd', {}, value)))),
    h('h3', { class: 'timeline-heading' }, 'Timeline'),
    events.length === 0
      ? h('p', { class: 'empty-state' }, 'Nothing yet: the send has not returned.')
      : h('ol', { class: 'timeline', 'data-testid': 'timeline' }, events.map((event) => h('li', { class: 'timeline-event', 'data-status': event.status, 'data-source': event.source },
        h('div', { class: 'timeline-event-head' },
          statusBadge(event.status),
          h('span', { class: 'timeline-source' }, SOURCES[event.source] || event.source),
          h('span', { class: 'timeline-time nowrap' }, formatTime(event.at))),
        h('dl', { class: 'timeline-facts' },
          h('div', {}, h('dt', {}, 'Provider status'), h('dd', {}, event.providerStatus ? h('code', {}, event.providerStatus) : '—')),
          event.errorCode ? h('div', {}, h('dt', {}, 'Error code'), h('dd', {}, h('code', {}, event.errorCode))) : null)))),
    message.status === 'queued' || message.status === 'sent'
      ? h('p', { class: 'field-description' }, 'No final report yet. Providers report delivery only when the host gave them a report URL (--public-url), and some carriers never report.')
      : null,
  ];
}
