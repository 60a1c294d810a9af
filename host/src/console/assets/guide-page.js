// The guide, full screen like Logto's: the factory's README on the left; on the right
// "1 Parameter configuration", "2 Test", then "Save and Done", which creates the connector
// and makes it live (the previous live connector is retired, its config kept), then opens
// its details page.

import { api, apiText, ApiError } from './api.js';
import { h, insertSanitizedHtml, loading, localized, logoImage, notify, replaceChildren } from './dom.js';
import { createConfigForm, saveOnSubmit } from './config-form.js';
import { createConnectorTester } from './connector-tester.js';

/** The README, rendered and sanitized by the host, in an element of its own. */
export async function readmeView(factoryId, name) {
  const article = h('article', { class: 'readme', 'aria-label': `README: ${name}`, 'data-testid': 'readme' }, loading('Loading the README…'));
  try {
    const html = await apiText(`/api/connector-factories/${encodeURIComponent(factoryId)}/readme.html`);
    insertSanitizedHtml(article, html);
  } catch (error) {
    replaceChildren(article, h('p', { class: 'notice notice-error' }, `The README could not be loaded: ${error.message}`));
  }
  return article;
}

export async function renderGuidePage(container, { factoryId, replacing }, context) {
  replaceChildren(container, loading());
  let factory;
  try {
    factory = await api('GET', `/api/connector-factories/${encodeURIComponent(factoryId)}`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      replaceChildren(container, h('div', { class: 'notice notice-error', role: 'alert' },
        h('p', {}, `No loaded plugin provides the connector ${factoryId}. It may have been removed from the plugins folder.`),
        h('a', { class: 'button', href: '#/connectors' }, 'Back to connectors')));
      return;
    }
    throw error;
  }
  const [replaced, ttl] = await Promise.all([
    replacing ? api('GET', `/api/connectors/${encodeURIComponent(replacing)}`).catch(() => null) : null,
    context.codeTimeToLiveSeconds(),
  ]);
  if (!context.isCurrent()) return;
  const name = localized(factory.name) || factory.id;
  document.title = `Set up ${name} · connector-host console`;
  const closeTarget = replacing ? `#/connectors/${encodeURIComponent(replacing)}` : '#/connectors';

  const saveButton = h('button', { type: 'submit', class: 'button button-primary button-large', form: 'guide-form' }, 'Save and Done');
  const saveStatus = h('p', { class: 'save-status', role: 'status', 'aria-live': 'polite' });
  const form = createConfigForm({ metadata: factory, codeTimeToLiveSeconds: ttl, onChange: updateSaveButton });
  let tester = null;
  function updateSaveButton() {
    tester?.configChanged();
    const invalidJson = form.hasInvalidJson();
    saveButton.disabled = invalidJson;
    saveStatus.textContent = invalidJson ? 'Fix the JSON above to save.' : '';
  }
  updateSaveButton();
  let saved = false;
  context.setUnsavedChangesCheck(() => !saved && form.isDirty());

  const configForm = h('form', { id: 'guide-form', class: 'guide-config', novalidate: true }, form.element);
  configForm.addEventListener('submit', saveOnSubmit({
    form,
    saveButton,
    saveStatus,
    async save(config) {
      const connector = await api('POST', '/api/connectors', { connectorId: factory.id, config });
      saved = true;
      notify(replaced ? `Saved. ${name} is live; ${localized(replaced.name) || replaced.connectorId} moved to Previous SMS connectors.` : `Saved. ${name} is live.`);
      await context.navigate(`#/connectors/${encodeURIComponent(connector.id)}`, { force: true });
    },
  }));

  tester = createConnectorTester({ form, factoryId: factory.id });
  const closeButton = h('a', { class: 'icon-button guide-close', href: closeTarget, 'aria-label': 'Close the guide' }, '×');
  const readme = await readmeView(factory.id, name);
  const guideTitle = h('h1', { class: 'guide-title', tabindex: '-1' }, name);
  if (!context.isCurrent()) return;

  replaceChildren(container,
    h('div', { class: 'guide', 'data-testid': 'guide' },
      h('header', { class: 'guide-header' },
        closeButton,
        logoImage(factory.logo, name, 32),
        h('div', {},
          guideTitle,
          h('p', { class: 'guide-subtitle' }, 'A step by step guide to configure your connector'))),
      h('div', { class: 'guide-columns' },
        h('section', { class: 'guide-readme', 'aria-labelledby': 'guide-readme-heading' },
          h('h2', { id: 'guide-readme-heading', class: 'guide-readme-heading' }, `README: ${name}`),
          readme),
        h('section', { class: 'guide-steps', 'aria-label': 'Configuration' },
          replaced ? h('p', { class: 'notice' }, `Saving makes ${name} the live SMS connector. ${localized(replaced.name) || replaced.connectorId} (${replaced.id}) moves to Previous SMS connectors with its configuration.`) : null,
          h('div', { class: 'step' },
            h('h2', { class: 'step-title' }, h('span', { class: 'step-number', 'aria-hidden': 'true' }, '1'), 'Parameter configuration'),
            configForm),
          h('div', { class: 'step' },
            h('h2', { class: 'step-title' }, h('span', { class: 'step-number', 'aria-hidden': 'true' }, '2'), 'Test connection'),
            tester.element),
          h('div', { class: 'guide-footer' }, saveStatus, saveButton)))),
  );
  // Escape closes the guide like Logto's full-screen modal, unless it is editing a field
  // (in the JSON editor, Escape releases Tab).
  container.addEventListener('keydown', (event) => {
    if (event.key !== 'Escape' || event.defaultPrevented || document.querySelector('.backdrop')) return;
    if (event.target instanceof Element && event.target.closest('input, textarea, select, [contenteditable]')) return;
    context.navigate(closeTarget);
  });
  // On a phone the README comes first and is to be read first: focus the title, not a field
  // far below it.
  if (window.matchMedia('(max-width: 820px)').matches) {
    guideTitle.focus({ preventScroll: true });
    container.querySelector('.guide-columns').scrollTop = 0;
  } else {
    form.focusFirstField();
  }
}
