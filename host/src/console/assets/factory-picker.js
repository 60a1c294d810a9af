// "Set up SMS connector" / "Change SMS connector": the SMS factories the loaded plugins
// provide, as cards (a radio group: arrow keys move, Space picks); Next stays disabled until
// one is picked and opens the guide. When changing, the live connector's factory is marked
// and cannot be picked (its configuration is edited on its page). The list follows the
// plugins folder while open.

import { api } from './api.js';
import { badge, h, loading, localized, logoImage, replaceChildren, uniqueId } from './dom.js';
import { openDialog } from './modal.js';
import { watchPluginFiles } from './plugin-changes.js';

export function openFactoryPicker({ context, currentFactoryId = null, replacingConnectorId = null }) {
  const changing = Boolean(replacingConnectorId);
  const body = h('div', { class: 'factory-picker' }, loading('Loading connector plugins…'));
  const next = h('button', { type: 'submit', class: 'button button-primary', disabled: true, form: 'factory-picker-form' }, 'Next');
  const cancel = h('button', { type: 'button', class: 'button' }, 'Cancel');
  let onDialogClosed = () => {};
  const dialog = openDialog({
    title: changing ? 'Change SMS connector' : 'Set up SMS connector',
    description: changing
      ? 'Pick the connector to use instead. The current one moves to Previous SMS connectors with its configuration once you save the new one.'
      : 'Pick the SMS connector to set up. You will read its guide, fill in its configuration and test it before it goes live.',
    body,
    footer: [cancel, next],
    testId: 'factory-picker',
    onClose: () => onDialogClosed(),
  });
  cancel.addEventListener('click', dialog.close);

  let stopWatching = () => {};
  let closed = false;

  function showFactories(factories, first) {
    const smsFactories = factories.filter((factory) => factory.type === 'Sms');
    const picked = body.querySelector('input[type="radio"]:checked')?.value ?? null;
    const focusedValue = body.contains(document.activeElement) && document.activeElement.matches('input[type="radio"]') ? document.activeElement.value : null;
    if (smsFactories.length === 0) {
      next.disabled = true;
      replaceChildren(body, h('p', { class: 'empty-state', 'data-testid': 'no-factories' },
        'No SMS connector plugin is loaded. Drop a plugin file (.so) into the plugins folder; it shows up here within a second. ',
        h('a', { href: '#/plugins', onclick: dialog.close }, 'See Plugins'), ' for files that were refused.'));
      return;
    }
    const groupName = uniqueId('factory');
    const filter = h('input', { type: 'search', class: 'factory-filter', placeholder: 'Filter by name or description', 'aria-label': 'Filter connectors' });
    const cards = smsFactories.map((factory) => {
      const name = localized(factory.name) || factory.id;
      const isCurrent = factory.id === currentFactoryId;
      // Changing to the factory already live would make a second connector of the same name;
      // its configuration is edited on its own page instead (Logto hides it).
      const unavailable = changing && isCurrent;
      const radio = h('input', { type: 'radio', name: groupName, value: factory.id, class: 'factory-radio', disabled: unavailable });
      radio.addEventListener('change', () => {
        next.disabled = false;
      });
      const card = h('label', { class: unavailable ? 'factory-card factory-card-unavailable' : 'factory-card', 'data-factory-id': factory.id },
        radio,
        logoImage(factory.logo, name, 36),
        h('span', { class: 'factory-card-text' },
          h('span', { class: 'factory-card-name' }, name, isCurrent ? [' ', badge('Current', 'live')] : null, factory.isDemo ? [' ', badge('Demo', 'neutral')] : null),
          h('span', { class: 'factory-card-description' }, localized(factory.description)),
          unavailable ? h('span', { class: 'factory-card-note' }, 'Live now: edit its configuration on its page.') : null,
          h('span', { class: 'factory-card-id' }, factory.id, factory.pluginVersion ? ` · v${factory.pluginVersion}` : '')),
      );
      card.dataset.search = `${name} ${localized(factory.description)} ${factory.id}`.toLowerCase();
      if (picked === factory.id && !unavailable) radio.checked = true;
      return card;
    });
    next.disabled = !cards.some((card) => card.querySelector('input:checked'));
    filter.addEventListener('input', () => {
      const needle = filter.value.trim().toLowerCase();
      for (const card of cards) card.hidden = needle !== '' && !card.dataset.search.includes(needle);
    });
    const form = h('form', { id: 'factory-picker-form', class: 'factory-picker-form' },
      h('fieldset', {}, h('legend', { class: 'visually-hidden' }, 'SMS connectors'), h('div', { class: 'factory-cards' }, cards)));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const chosen = form.querySelector('input[type="radio"]:checked');
      if (!chosen) return;
      dialog.close();
      const query = replacingConnectorId ? `?replacing=${encodeURIComponent(replacingConnectorId)}` : '';
      context.navigate(`#/guide/${encodeURIComponent(chosen.value)}${query}`);
    });
    const hadFocus = body.contains(document.activeElement) || document.activeElement === document.body;
    replaceChildren(body, smsFactories.length > 5 ? filter : null, form);
    const enabledRadios = [...form.querySelectorAll('input[type="radio"]:not([disabled])')];
    const refocus = enabledRadios.find((radio) => radio.value === focusedValue)
      || enabledRadios.find((radio) => radio.checked) || enabledRadios[0] || next;
    if (first || hadFocus) refocus.focus();
  }

  function load(first) {
    return api('GET', '/api/connector-factories').then((factories) => {
      if (!closed) showFactories(factories, first);
    }).catch((error) => {
      if (first) replaceChildren(body, h('p', { class: 'notice notice-error', role: 'alert' }, `The connector plugins could not be listed: ${error.message}`));
    });
  }
  load(true).then(() => {
    // A plugin dropped (or removed) while the picker is open appears (or goes) in it.
    stopWatching = watchPluginFiles(() => load(false), { isActive: () => !closed });
  });
  onDialogClosed = () => {
    closed = true;
    stopWatching();
  };
}
