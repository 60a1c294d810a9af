// A connector's details: header (logo, name, factory, id, live or retired), Check README,
// the "⋯" menu (Change SMS connector, Delete), the configuration form and the test, with a
// Save/Discard bar while edited (PATCH) and a question before leaving with unsaved edits.

import { api, ApiError } from './api.js';
import { badge, copyButton, h, loading, logoImage, notify, replaceChildren } from './dom.js';
import { menuButton, openDialog } from './modal.js';
import { createConfigForm, saveOnSubmit } from './config-form.js';
import { createConnectorTester } from './connector-tester.js';
import { connectorName, connectorProblem, connectorStatusBadges, deleteConnector, makeLiveButton } from './connector-actions.js';
import { openFactoryPicker } from './factory-picker.js';
import { readmeView } from './guide-page.js';

export async function renderConnectorDetailsPage(container, { connectorId }, context) {
  replaceChildren(container, loading());
  let connector;
  try {
    connector = await api('GET', `/api/connectors/${encodeURIComponent(connectorId)}`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      replaceChildren(container, h('div', { class: 'notice notice-error', role: 'alert' },
        h('p', {}, `There is no connector ${connectorId}. It may have been deleted.`),
        h('a', { class: 'button', href: '#/connectors' }, 'Back to connectors')));
      return;
    }
    throw error;
  }
  const ttl = await context.codeTimeToLiveSeconds();
  if (!context.isCurrent()) return;
  const name = connectorName(connector);
  document.title = `${name} · connector-host console`;
  const factoryLoaded = Array.isArray(connector.formItems) || typeof connector.configTemplate === 'string';

  const actions = [];
  if (factoryLoaded) {
    actions.push(h('button', { type: 'button', class: 'button', onclick: () => showReadme(connector.connectorId, name) }, 'Check README'));
  }
  if (!connector.enabled) {
    const makeLive = makeLiveButton(connector, context, () => window.location.hash);
    actions.push(makeLive);
  }
  actions.push(menuButton({
    label: 'More',
    items: [
      ...(connector.enabled ? [{ label: 'Change SMS connector', onSelect: () => openFactoryPicker({ context, currentFactoryId: connector.connectorId, replacingConnectorId: connector.id }) }] : []),
      { label: 'Delete', danger: true, onSelect: () => deleteConnector(connector, context) },
    ],
  }));

  const header = h('header', { class: 'details-header card' },
    h('a', { class: 'back-link', href: '#/connectors' }, '← Connectors'),
    h('div', { class: 'details-heading' },
      logoImage(connector.logo, name, 48),
      h('div', { class: 'details-title-block' },
        h('h1', { class: 'details-title' }, name, ' ', badge('SMS', 'type'), connectorStatusBadges(connector)),
        h('p', { class: 'connector-meta' },
          h('span', {}, 'Factory ', h('code', { 'data-testid': 'factory-id' }, connector.connectorId)),
          h('span', { class: 'connector-id' }, 'ID ', h('code', { 'data-testid': 'connector-id' }, connector.id), copyButton(connector.id, 'connector ID')))),
      h('div', { class: 'row-actions' }, actions)),
    connectorProblem(connector),
    connector.enabled ? null : h('p', { class: 'notice' }, 'Retired: this connector is not sending. Its configuration is kept; Make live switches back to it.'),
  );

  if (!factoryLoaded || connector.orphaned) {
    // Without its plugin file the connector can be neither edited nor tested (both need the
    // factory); an orphaned live one still sends on the build loaded before.
    const why = connector.orphaned
      ? 'Its plugin file is no longer in the plugins folder, so it cannot be edited here. It keeps sending with this configuration (secrets masked):'
      : 'The plugin that provides this connector is not loaded, so its form cannot be shown. The saved configuration (secrets masked) is kept:';
    const remedy = connector.orphaned
      ? 'A test needs the plugin file. Put the file back into the plugins folder (see Plugins), or change the SMS connector.'
      : 'A test needs the plugin file. Put it back into the plugins folder (see Plugins).';
    replaceChildren(container, header,
      h('div', { class: 'details-columns' },
        h('section', { class: 'card', 'aria-labelledby': 'details-config-heading' },
          h('h2', { id: 'details-config-heading' }, 'Parameter configuration'),
          h('p', {}, why),
          h('pre', { class: 'code-block', 'data-testid': 'saved-config' }, JSON.stringify(connector.config, null, 2))),
        h('section', { class: 'card', 'aria-labelledby': 'details-test-heading', 'data-testid': 'test-unavailable' },
          h('h2', { id: 'details-test-heading' }, 'Test'),
          h('p', { class: 'empty-state' }, remedy, ' ', h('a', { href: '#/plugins' }, 'Open Plugins')))));
    return;
  }

  const saveBar = h('div', { class: 'save-bar', hidden: true, role: 'region', 'aria-label': 'Unsaved changes' });
  let tester = null;
  const form = createConfigForm({ metadata: connector, savedConfig: connector.config, codeTimeToLiveSeconds: ttl, onChange: updateSaveBar });
  const saveButton = h('button', { type: 'submit', class: 'button button-primary', form: 'details-form' }, 'Save changes');
  const discardButton = h('button', { type: 'button', class: 'button' }, 'Discard');
  const saveStatus = h('span', { class: 'save-status', role: 'status', 'aria-live': 'polite' });
  replaceChildren(saveBar, h('span', { class: 'save-bar-text' }, 'You have unsaved changes.'), saveStatus, discardButton, saveButton);
  function updateSaveBar() {
    tester?.configChanged();
    saveBar.hidden = !form.isDirty();
    saveButton.disabled = form.hasInvalidJson();
    saveStatus.textContent = form.hasInvalidJson() ? 'Fix the JSON to save.' : '';
  }
  context.setUnsavedChangesCheck(() => form.isDirty());
  discardButton.addEventListener('click', () => {
    form.reset();
    saveStatus.textContent = '';
    updateSaveBar();
    notify('Changes discarded.');
    // The bar (and the focused Discard) is gone: focus goes back to the form's first field.
    form.focusFirstField();
  });
  const configForm = h('form', { id: 'details-form', novalidate: true }, form.element);
  configForm.addEventListener('submit', saveOnSubmit({
    form,
    saveButton,
    saveStatus,
    shouldSave: () => form.isDirty(),
    async save(config) {
      await api('PATCH', `/api/connectors/${encodeURIComponent(connector.id)}`, { config });
      notify(connector.enabled ? `Saved. ${name} sends with the new configuration.` : 'Saved.');
      await context.navigate(window.location.hash, { force: true });
    },
  }));
  tester = createConnectorTester({ form, factoryId: connector.connectorId, savedConnectorId: connector.id });

  replaceChildren(container,
    header,
    h('div', { class: 'details-columns' },
      h('section', { class: 'card', 'aria-labelledby': 'details-config-heading' },
        h('h2', { id: 'details-config-heading' }, 'Parameter configuration'),
        configForm),
      h('section', { class: 'card', 'aria-labelledby': 'details-test-heading' },
        h('h2', { id: 'details-test-heading' }, 'Test'),
        tester.element)),
    saveBar,
  );
}

async function showReadme(factoryId, name) {
  const body = h('div', {}, loading('Loading the README…'));
  openDialog({ title: `README: ${name}`, body, variant: 'drawer', testId: 'readme-drawer' });
  replaceChildren(body, await readmeView(factoryId, name));
}
