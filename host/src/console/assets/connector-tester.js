// "Test": sends a verification code with the Generic template to the operator's phone through
// the *unsaved* config (POST /api/connectors/{factoryId}/test). Every error is shown next to
// what caused it: config fields, the templates editor, the phone input, or the Send button
// (rate limits with their wait, vendor errors with the vendor's message). A failed test never
// breaks the page.

import { api, ApiError } from './api.js';
import { asSentence, h, uniqueId } from './dom.js';
import { templatesWithoutCode } from './config-form.js';

/** `+1 201 555 0123`, `12015550123`, `(201) 555-0123` with a country code: digits with an optional +. */
export function normalizePhone(input) {
  const compact = input.trim().replace(/[\s\-().\u00a0]/g, '');
  if (!/^\+?\d{6,15}$/.test(compact)) return null;
  return compact.startsWith('+') ? compact : `+${compact}`;
}

/**
 * `form`: the config form (collect, showServerErrors, showFieldError); `factoryId`: whose
 * test route to call; `savedConnectorId`: on a connector's page, the connector whose saved
 * secrets stand behind `******`. Returns `{element}`.
 */
export function createConnectorTester({ form, factoryId, savedConnectorId = undefined }) {
  const phoneId = uniqueId('test-phone');
  const phoneHintId = uniqueId('test-phone-hint');
  const phoneErrorId = uniqueId('test-phone-error');
  const phone = h('input', {
    id: phoneId,
    type: 'tel',
    name: 'phone',
    autocomplete: 'tel',
    inputmode: 'tel',
    placeholder: '+1 201 555 0123',
    'aria-describedby': `${phoneHintId} ${phoneErrorId}`,
  });
  const phoneError = h('p', { id: phoneErrorId, class: 'field-error', 'aria-live': 'polite', hidden: true });
  const sendButton = h('button', { type: 'submit', class: 'button button-primary' }, 'Send');
  // While sending, Send is aria-disabled rather than disabled: a disabled button loses the
  // focus to <body>, and a keyboard user would have to find their way back.
  let sending = false;
  const outcome = h('p', { class: 'test-outcome', role: 'status', 'aria-live': 'polite' });
  const element = h('form', { class: 'connector-tester', novalidate: true, 'data-testid': 'connector-tester' },
    h('div', { class: 'field' },
      h('label', { class: 'field-label', for: phoneId }, 'Phone number'),
      h('div', { class: 'input-with-button' }, phone, sendButton),
      h('p', { id: phoneHintId, class: 'field-description' }, 'With the country code, e.g. +1 201 555 0123. A verification code is sent with the Generic template; nothing is saved.'),
      phoneError,
    ),
    outcome,
  );

  function showPhoneError(message) {
    phoneError.hidden = !message;
    phoneError.textContent = message || '';
    if (message) phone.setAttribute('aria-invalid', 'true');
    else phone.removeAttribute('aria-invalid');
  }

  function showOutcome(message, kind) {
    outcome.textContent = message;
    outcome.className = `test-outcome test-outcome-${kind}`;
  }

  phone.addEventListener('input', () => {
    if (!phoneError.hidden) showPhoneError(null);
  });

  element.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (sending) return;
    showPhoneError(null);
    showOutcome('', 'none');
    const normalized = normalizePhone(phone.value);
    if (!normalized) {
      showPhoneError(phone.value.trim() === '' ? 'Enter a phone number to send the test code to.' : 'Enter the number with its country code, e.g. +1 201 555 0123.');
      phone.focus();
      return;
    }
    const { config, problems } = form.collect();
    if (problems.length > 0) {
      showOutcome('Fix the highlighted configuration fields first.', 'error');
      form.focusFirstError();
      return;
    }
    sending = true;
    sendButton.setAttribute('aria-disabled', 'true');
    sendButton.setAttribute('aria-busy', 'true');
    showOutcome('Sending…', 'pending');
    try {
      await api('POST', `/api/connectors/${encodeURIComponent(factoryId)}/test`, { phone: normalized, config, savedConnectorId });
      const withoutCode = typeof config.templates === 'object' ? templatesWithoutCode(JSON.stringify(config.templates)) : '';
      showOutcome(`Test message sent to ${normalized}.${withoutCode.includes('Generic') ? ' Its Generic template has no {{code}}: the message carried no code.' : ''}`, 'success');
    } catch (error) {
      showTestError(error, normalized);
    } finally {
      sending = false;
      sendButton.removeAttribute('aria-disabled');
      sendButton.removeAttribute('aria-busy');
    }
  });

  function showTestError(error, normalized) {
    if (!(error instanceof ApiError)) {
      showOutcome(`The test failed: ${error.message}`, 'error');
      return;
    }
    switch (error.code) {
      case 'guard.invalid_phone_number':
      case 'guard.phone_country_not_allowed':
        showPhoneError(asSentence(error.message));
        showOutcome('', 'none');
        phone.focus();
        return;
      case 'connector.invalid_config': {
        const errors = error.data && Array.isArray(error.data.errors) ? error.data.errors : [];
        if (errors.length > 0) form.showServerErrors(errors);
        else form.showFormError(error.message);
        showOutcome('The configuration is invalid: see the highlighted fields.', 'error');
        form.focusFirstError();
        return;
      }
      case 'connector.template_not_found':
        if (form.showFieldError('templates', 'No Generic template: the test sends a Generic message. Add a template with "usageType": "Generic".')) {
          showOutcome('No template for this message: see Templates.', 'error');
        } else {
          showOutcome(asSentence(error.message), 'error');
        }
        return;
      default:
        break;
    }
    if (error.status === 429) {
      const seconds = error.retryAfterSeconds ?? (error.data && error.data.retryAfterSeconds);
      const saysWhen = /\d+ s\b/.test(error.message);
      const wait = Number.isFinite(seconds) && !saysWhen ? ` Try again in ${seconds} s.` : '';
      showOutcome(`${asSentence(error.message)}${wait}`, 'error');
    } else if (error.status === 502 || error.code.startsWith('connector.')) {
      showOutcome(`The provider did not send to ${normalized}: ${asSentence(error.message)}`, 'error');
    } else {
      showOutcome(`The test failed: ${asSentence(error.message)}`, 'error');
    }
  }

  return {
    element,
    /** The configuration changed (edited, discarded): what the last test said no longer holds. */
    configChanged() {
      if (!sending) showOutcome('', 'none');
    },
  };
}
