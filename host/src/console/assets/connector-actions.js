// What the connectors list and a connector's page both show and do: its name, badges and
// problem line, Make live, Use as fallback, and Delete (after a confirmation).

import { api } from './api.js';
import { asSentence, badge, h, localized, notify } from './dom.js';
import { confirmDialog } from './modal.js';

export function connectorName(connector) {
  return localized(connector.name) || connector.connectorId;
}

/** Live, not loaded, orphaned, demo: what an operator must know about a connector at a glance. */
export function connectorStatusBadges(connector) {
  return [
    connector.enabled ? badge('Live', 'live') : badge('Retired', 'neutral'),
    connector.fallback ? badge('Fallback', 'info') : null,
    connector.loaded ? null : badge('Not loaded', 'error'),
    connector.orphaned ? badge('Orphaned', 'warning') : null,
    // A development connector sends nothing: its messages go to the host's outbox file.
    connector.isDemo ? badge('Demo', 'warning') : null,
  ];
}

/** The sentence behind the badges, when there is something wrong. */
export function connectorProblem(connector) {
  if (!connector.loaded) {
    return h('p', { class: 'notice notice-error', 'data-testid': 'load-error' },
      connector.enabled ? 'Not sending: ' : 'Cannot be made live: ',
      connector.loadError || 'no loaded plugin provides this connector.');
  }
  if (connector.orphaned) {
    return h('p', { class: 'notice notice-warning', 'data-testid': 'orphaned' },
      'Orphaned: its plugin file was removed or replaced by a build that was not taken up. It keeps sending on the loaded code until you change it.');
  }
  return null;
}

/** A "Make live" button: one click makes the retired connector live, then `thenGoTo`. */
export function makeLiveButton(connector, context, thenGoTo) {
  const name = connectorName(connector);
  const button = h('button', { type: 'button', class: 'button button-primary', disabled: !connector.loaded, 'aria-label': `Make live: ${name} (${connector.id})` }, 'Make live');
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      await api('POST', `/api/connectors/${encodeURIComponent(connector.id)}/enable`);
      notify(`${name} is live again.`);
      await context.navigate(thenGoTo(), { force: true });
    } catch (error) {
      notify(`${name} could not be made live: ${asSentence(error.message)}`, 'error');
      button.disabled = false;
    }
  });
  return button;
}

/**
 * "Use as fallback" on a previous connector (one standby per store: it replaces another), or
 * "Stop using as fallback" on the standby; then `thenGoTo`.
 */
export function fallbackButton(connector, context, thenGoTo) {
  const name = connectorName(connector);
  const marked = connector.fallback === true;
  const label = marked ? 'Stop using as fallback' : 'Use as fallback';
  const button = h('button', {
    type: 'button',
    class: 'button',
    'data-testid': marked ? 'clear-fallback' : 'use-as-fallback',
    disabled: !marked && !connector.loaded,
    'aria-label': `${label}: ${name} (${connector.id})`,
  }, label);
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      await api(marked ? 'DELETE' : 'POST', `/api/connectors/${encodeURIComponent(connector.id)}/fallback`);
      notify(marked
        ? `${name} is no longer the fallback: when the live connector's provider fails, sends fail.`
        : `${name} is the fallback: it sends when the live connector's provider takes nothing.`);
      await context.navigate(thenGoTo(), { force: true });
    } catch (error) {
      notify(`${name}: ${asSentence(error.message)}`, 'error');
      button.disabled = false;
    }
  });
  return button;
}

/** Asks, then deletes the connector and returns to the list. */
export async function deleteConnector(connector, context) {
  const name = connectorName(connector);
  const confirmed = await confirmDialog({
    title: `Delete ${name}?`,
    message: connector.enabled
      ? `${connector.id} is the live SMS connector. After deleting it no SMS connector is live, and sends answer 501 until you set one up or make a previous one live. Its configuration is deleted for good.`
      : `The connector ${connector.id} and its saved configuration are deleted for good. This cannot be undone.`,
    confirmLabel: 'Delete',
    danger: true,
  });
  if (!confirmed) return;
  try {
    await api('DELETE', `/api/connectors/${encodeURIComponent(connector.id)}`);
    notify(`${name} was deleted.`);
    await context.navigate('#/connectors', { force: true });
  } catch (error) {
    notify(`${name} could not be deleted: ${asSentence(error.message)}`, 'error');
  }
}
