// "Set up SMS connector" / "Change SMS connector": the SMS factories the loaded plugins
// provide, as cards (a radio group: arrow keys move, Space picks); Next stays disabled until
// one is picked and opens the guide. When changing, the live connector's factory is marked.

import { api } from './api.js';
import { badge, h, loading, localized, logoImage, replaceChildren, uniqueId } from './dom.js';
import { openDialog } from './modal.js';

export function openFactoryPicker({ context, currentFactoryId = null, replacingConnectorId = null }) {
  const changing = Boolean(replacingConnectorId);
  const body = h('div', { class: 'factory-picker' }, loading('Loading connector plugins…'));
  const next = h('button', { type: 'submit', class: 'button button-primary', disabled: true, form: 'factory-picker-form' }, 'Next');
  const cancel = h('button', { type: 'button', class: 'button' }, 'Cancel');
  const dialog = openDialog({
    title: changing ? 'Change SMS connector' : 'Set up SMS connector',
    description: changing
      ? 'Pick the connector to use instead. The current one moves to Previous SMS connectors with its configuration once you save the new one.'
      : 'Pick the SMS connector to set up. You will read its guide, fill in its configuration and test it before it goes live.',
    body,
    footer: [cancel, next],
    testId: 'factory-picker',
  });
  cancel.addEventListener('click', dialog.close);

  api('GET', '/api/connector-factories').then((factories) => {
    const smsFactories = factories.filter((factory) => factory.type === 'Sms');
    if (smsFactories.length === 0) {
      replaceChildren(body, h('p', { class: 'empty-state' },
        'No SMS connector plugin is loaded. Drop a plugin file (.so) into the plugins folder; it shows up here within a second. ',
        h('a', { href: '#/plugins', onclick: dialog.close }, 'See Plugins'), ' for files that were refused.'));
      return;
    }
    const groupName = uniqueId('factory');
    const filter = h('input', { type: 'search', class: 'factory-filter', placeholder: 'Filter by name or description', 'aria-label': 'Filter connectors' });
    const cards = smsFactories.map((factory) => {
      const name = localized(factory.name) || factory.id;
      const isCurrent = factory.id === currentFactoryId;
      const radio = h('input', { type: 'radio', name: groupName, value: factory.id, class: 'factory-radio' });
      radio.addEventListener('change', () => {
        next.disabled = false;
      });
      const card = h('label', { class: 'factory-card', 'data-factory-id': factory.id },
        radio,
        logoImage(factory.logo, name, 36),
        h('span', { class: 'factory-card-text' },
          h('span', { class: 'factory-card-name' }, name, isCurrent ? [' ', badge('Current', 'live')] : null, factory.isDemo ? [' ', badge('Demo', 'neutral')] : null),
          h('span', { class: 'factory-card-description' }, localized(factory.description)),
          h('span', { class: 'factory-card-id' }, factory.id, factory.pluginVersion ? ` · v${factory.pluginVersion}` : '')),
      );
      card.dataset.search = `${name} ${localized(factory.description)} ${factory.id}`.toLowerCase();
      return card;
    });
    filter.addEventListener('input', () => {
      const needle = filter.value.trim().toLowerCase();
      for (const card of cards) card.hidden = needle !== '' && !card.dataset.search.includes(needle);
    });
    const form = h('form', { id: 'factory-picker-form', class: 'factory-picker-form' },
      h('fieldset', {}, h('legend', { class: 'visually-hidden' }, 'SMS connectors'), h('div', { class: 'factory-cards' }, cards)));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const picked = form.querySelector('input[type="radio"]:checked');
      if (!picked) return;
      dialog.close();
      const query = replacingConnectorId ? `?replacing=${encodeURIComponent(replacingConnectorId)}` : '';
      context.navigate(`#/guide/${encodeURIComponent(picked.value)}${query}`);
    });
    replaceChildren(body, smsFactories.length > 5 ? filter : null, form);
    (form.querySelector('input[type="radio"]') || next).focus();
  }).catch((error) => {
    replaceChildren(body, h('p', { class: 'notice notice-error', role: 'alert' }, `The connector plugins could not be listed: ${error.message}`));
  });
}
