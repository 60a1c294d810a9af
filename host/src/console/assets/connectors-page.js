// "Email and SMS connectors": the live SMS connector (or Set up), then Previous SMS
// connectors, the retired ones this host keeps (Logto deletes them), each with Make live and
// Delete.

import { api } from './api.js';
import { formatTime, h, loading, logoImage, replaceChildren } from './dom.js';
import { connectorName, connectorProblem, connectorStatusBadges, deleteConnector, fallbackButton, makeLiveButton } from './connector-actions.js';
import { openFactoryPicker } from './factory-picker.js';
import { watchForChanges } from './page-refresh.js';

function identity(connector, { lastChanged = false, deliveries } = {}) {
  return h('div', { class: 'connector-identity' },
    logoImage(connector.logo, connectorName(connector)),
    h('div', { class: 'connector-identity-text' },
      h('div', { class: 'connector-name' }, connectorName(connector), ' ', connectorStatusBadges(connector)),
      h('div', { class: 'connector-meta' },
        h('span', {}, 'Factory ', h('code', {}, connector.connectorId)),
        h('span', {}, 'ID ', h('code', {}, connector.id)),
        lastChanged ? h('span', { class: 'nowrap' }, `Last changed ${formatTime(connector.updatedAt)}`) : null,
        deliveryRate(connector, deliveries)),
    ),
  );
}

/**
 * "92% delivered (24 h, 50 messages)" from GET /api/messages/summary: of the messages whose
 * fate a report told, the share delivered; nothing when the message log is off or the
 * summary could not be read.
 */
function deliveryRate(connector, deliveries) {
  if (!deliveries || deliveries.messageLog === false || !Array.isArray(deliveries.connectors)) return null;
  const counts = deliveries.connectors.find((entry) => entry.connectorId === connector.id);
  const total = counts?.total ?? 0;
  const messages = `${total} ${total === 1 ? 'message' : 'messages'}`;
  const title = counts
    ? `Last 24 hours: ${counts.delivered} delivered, ${counts.undelivered} undelivered, ${counts.failed} failed, ${counts.queued + counts.sent} without a final report, ${counts.unknown} unknown. Messages whose provider never reports are not counted as failures.`
    : 'No message sent through this connector in the last 24 hours.';
  if (typeof counts?.deliveredRate !== 'number') {
    return h('span', { class: 'delivery-rate', 'data-testid': 'delivery-rate', title }, total === 0 ? 'No messages in 24 h' : `No delivery reports yet (24 h, ${messages})`);
  }
  const percent = Math.round(counts.deliveredRate * 100);
  const kind = percent >= 90 ? 'delivery-rate-good' : percent < 70 ? 'delivery-rate-poor' : '';
  return h('span', { class: `delivery-rate ${kind}`, 'data-testid': 'delivery-rate', title }, `${percent}% delivered (24 h, ${messages})`);
}

const REFRESH_INTERVAL_MS = 2000;
// The summary counts a day of messages: asked again at most this often, not every poll.
const DELIVERIES_INTERVAL_MS = 30_000;
let deliveriesCache = { at: 0, value: null };

async function loadDeliveries() {
  if (Date.now() - deliveriesCache.at < DELIVERIES_INTERVAL_MS) return deliveriesCache.value;
  // The delivered rates are extra: the list shows without them when the summary fails.
  const value = await api('GET', '/api/messages/summary').then(withoutTime, () => null);
  deliveriesCache = { at: Date.now(), value };
  return value;
}

function loadConnectors() {
  return Promise.all([
    api('GET', '/api/connectors'),
    api('GET', '/api/connectors?enabled=false'),
    loadDeliveries(),
    loadStandby(),
  ]);
}

/** The standby and this host's breaker, from /health; what does not move every second. */
async function loadStandby() {
  const health = await api('GET', '/health').catch(() => null);
  const fallback = health && health.fallback;
  if (!fallback) return null;
  const breaker = fallback.breaker || {};
  return {
    connectorId: fallback.connectorId,
    ready: fallback.ready,
    reason: fallback.reason,
    state: breaker.state,
    consecutiveFailures: breaker.consecutiveFailures,
    lastError: breaker.lastError,
    coolOffSeconds: breaker.coolOffSeconds,
  };
}

/** The summary without its moving `since`, so an unchanged count redraws nothing. */
function withoutTime(summary) {
  return summary ? { messageLog: summary.messageLog, connectors: summary.connectors } : null;
}

export async function renderConnectorsPage(container, _params, context) {
  document.title = 'Connectors · connector-host console';
  replaceChildren(container, h('h1', {}, 'Connectors'), loading());
  // Opening the page shows the rates as they are now.
  deliveriesCache = { at: 0, value: null };
  const [live, retired, deliveries, standby] = await loadConnectors();
  if (!context.isCurrent()) return;
  replaceChildren(container, ...connectorsView(live, retired, deliveries, standby, context));
  // A connector changed through the API or on another host shows up without a reload; a
  // dialog open over the list (the picker, a confirmation) holds the redraw back.
  watchForChanges(loadConnectors, ([changedLive, changedRetired, changedDeliveries, changedStandby]) => {
    keepingFocus(container, () => replaceChildren(container, ...connectorsView(changedLive, changedRetired, changedDeliveries, changedStandby, context)));
  }, {
    initial: [live, retired, deliveries, standby],
    isActive: context.isCurrent,
    isPaused: () => document.querySelector('.backdrop') !== null,
    intervalMs: REFRESH_INTERVAL_MS,
  });
}

// Redraws `container` and puts focus back on the same control: the same button of the same
// connector's row (or section), else the screen itself, never <body>.
function keepingFocus(container, redraw) {
  const focused = document.activeElement;
  if (!(focused instanceof HTMLElement) || !container.contains(focused)) {
    redraw();
    return;
  }
  const holder = focused.closest('[data-connector-id], [data-testid]');
  const scope = holder && container.contains(holder) ? holder : container;
  const selector = scope === container ? null
    : scope.dataset.connectorId !== undefined ? `[data-connector-id="${CSS.escape(scope.dataset.connectorId)}"]`
      : `[data-testid="${CSS.escape(scope.dataset.testid)}"]`;
  const position = focusables(scope).indexOf(focused);
  redraw();
  const newScope = selector ? container.querySelector(selector) : container;
  const target = newScope ? focusables(newScope)[position] : null;
  const fallback = document.getElementById('main');
  (target && !target.disabled ? target : fallback)?.focus({ preventScroll: true });
}

function focusables(scope) {
  return [...scope.querySelectorAll('a[href], button, input, select, textarea, [tabindex]')];
}

/** What the standby does for the live connector now: the breaker's state in words. */
function standbyLine(standby, retired) {
  if (!standby) {
    return h('p', { class: 'section-description standby-line', 'data-testid': 'no-fallback' },
      'No fallback: when the live connector\'s provider is down, sends fail. Mark a previous connector with Use as fallback.');
  }
  const connector = retired.find((entry) => entry.id === standby.connectorId);
  const name = connector ? `${connectorName(connector)} (${standby.connectorId})` : standby.connectorId;
  if (!standby.ready) {
    return h('p', { class: 'notice notice-error standby-line', 'data-testid': 'fallback-state' },
      `Fallback ${name} cannot send here: ${standby.reason || 'its plugin is not loaded'}.`);
  }
  if (standby.state === 'open' || standby.state === 'half_open') {
    const failures = `${standby.consecutiveFailures} failure${standby.consecutiveFailures === 1 ? '' : 's'} in a row`;
    return h('p', { class: 'notice notice-warning standby-line', 'data-testid': 'fallback-state' },
      standby.state === 'open'
        ? `Breaker open: the live connector's provider took nothing (${failures}; last: ${standby.lastError || 'unknown'}). Sends go to the fallback ${name}; the live connector is tried again after ${standby.coolOffSeconds} s.`
        : `Breaker half-open: one send tries the live connector again; the others go to the fallback ${name}.`);
  }
  return h('p', { class: 'section-description standby-line', 'data-testid': 'fallback-state' },
    `Fallback: ${name} sends when the live connector's provider is unreachable or refuses every request (never twice: not after a timeout).`);
}

function connectorsView(live, retired, deliveries, standby, context) {
  const liveConnector = live[0] || null;

  const smsRow = liveConnector
    ? h('div', { class: 'connector-row', 'data-testid': 'live-sms-connector' },
        identity(liveConnector, { deliveries }),
        h('div', { class: 'row-actions' },
          h('a', { class: 'button', href: `#/connectors/${encodeURIComponent(liveConnector.id)}` }, 'Open'),
          h('button', { type: 'button', class: 'button', onclick: () => openFactoryPicker({ context, currentFactoryId: liveConnector.connectorId, replacingConnectorId: liveConnector.id }) }, 'Change SMS connector')),
        connectorProblem(liveConnector))
    : h('div', { class: 'connector-row connector-row-empty', 'data-testid': 'no-sms-connector' },
        h('div', { class: 'connector-identity' },
          logoImage(null, 'SMS'),
          h('div', {}, h('div', { class: 'connector-name' }, 'SMS connector'),
            h('div', { class: 'connector-meta' }, 'No SMS connector is live: sends and verification codes answer 501 until one is set up.'))),
        h('div', { class: 'row-actions' },
          h('button', { type: 'button', class: 'button button-primary', 'data-testid': 'set-up', onclick: () => openFactoryPicker({ context }) }, 'Set up')));

  const previousList = retired.length === 0
    ? h('p', { class: 'empty-state' }, 'None yet. When you change the SMS connector, the previous one is kept here with its configuration, ready to be made live again.')
    : h('ul', { class: 'connector-list', 'aria-label': 'Previous SMS connectors' }, retired.map((connector) => previousRow(connector, deliveries, context)));

  return [
    h('h1', {}, 'Connectors'),
    h('section', { class: 'card', 'aria-labelledby': 'sms-heading' },
      h('h2', { id: 'sms-heading' }, 'Email and SMS connectors'),
      h('p', { class: 'section-description' }, 'One SMS connector is live at a time: it sends every message and verification code. This page follows changes made elsewhere.'),
      smsRow,
      liveConnector ? standbyLine(standby, retired) : null),
    h('section', { class: 'card', 'aria-labelledby': 'previous-heading', 'data-testid': 'previous-sms-connectors' },
      h('h2', { id: 'previous-heading' }, 'Previous SMS connectors'),
      h('p', { class: 'section-description' }, 'Connectors that were live before. Their configuration is kept: make one live again in one click.'),
      previousList),
  ];
}

function previousRow(connector, deliveries, context) {
  const name = connectorName(connector);
  const makeLive = makeLiveButton(connector, context, () => '#/connectors');
  const remove = h('button', { type: 'button', class: 'button button-danger-plain', 'aria-label': `Delete ${name} (${connector.id})`, onclick: () => deleteConnector(connector, context) }, 'Delete');
  return h('li', { class: 'connector-row', 'data-testid': 'previous-connector', 'data-connector-id': connector.id },
    identity(connector, { lastChanged: true, deliveries }),
    h('div', { class: 'row-actions' },
      h('a', { class: 'button', href: `#/connectors/${encodeURIComponent(connector.id)}`, 'aria-label': `Open ${name} (${connector.id})` }, 'Open'),
      fallbackButton(connector, context, () => '#/connectors'),
      makeLive,
      remove),
    connectorProblem(connector));
}
