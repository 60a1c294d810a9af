// The "Parameter configuration" form, generated from a factory's `formItems` the way Logto's
// console draws them (Text, MultilineText, Number, Switch, Select, MultiSelect, Json; unknown
// types as text). A factory without form items gets one JSON editor prefilled from its
// `configTemplate`. Values are typed when collected: numbers as numbers, Json parsed, empty
// fields left out. Keys the form does not show are kept from the saved config, and a field
// the operator did not touch keeps its saved value exactly, so saving loses nothing.

import { asSentence, h, localized, uniqueId } from './dom.js';
import { createJsonEditor, formatJson } from './json-editor.js';
import { ApiError, MASK } from './api.js';

/** Mirrors the host's rule: confidential form items and keys ending in Key, Secret, Token, Password. */
export function isSecretKey(item) {
  return Boolean(item.isConfidential) || /(key|secret|token|password)$/i.test(item.key);
}

/** The top-level form key a server field path such as `templates[0].content` belongs to. */
export function formKeyOfPath(path, message) {
  if (!path || path === '.') {
    const missing = /missing field `([^`]+)`/.exec(message || '');
    return missing ? missing[1] : null;
  }
  return path.replace(/^\./, '').split(/[.[]/)[0];
}

function parseTemplate(configTemplate) {
  try {
    const parsed = JSON.parse(configTemplate || '{}');
    return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? parsed : {};
  } catch {
    return {};
  }
}

function sameJson(left, right) {
  return JSON.stringify(left) === JSON.stringify(right);
}

const USAGE_TYPES = [
  ['Register', 'a code to confirm a phone number when signing up'],
  ['SignIn', 'a code to sign in'],
  ['ForgotPassword', 'a code to reset a password'],
  ['Generic', 'everything else, and the fallback for a type without its own template; the Test below uses it'],
];

function templatesHelp(codeTimeToLiveSeconds) {
  const minutes = Math.round((codeTimeToLiveSeconds || 600) / 60);
  return h('details', { class: 'templates-help', open: true },
    h('summary', {}, 'About templates'),
    h('p', {}, 'A JSON list of ', h('code', {}, '{"usageType", "content", "locale"?}'), ' objects, one per usage type:'),
    h('ul', {}, USAGE_TYPES.map(([type, use]) => h('li', {}, h('code', {}, type), `: ${use}.`))),
    h('p', {}, h('code', {}, '{{code}}'), ` is replaced by the verification code. A code is valid for ${minutes} minutes (the host's code lifetime). Add `, h('code', {}, '"locale": "de"'), ' for a template in another language.'),
  );
}

/**
 * Builds the form. `metadata`: the factory's (or the connector's) metadata with `formItems`
 * and `configTemplate`. `savedConfig`: the saved (masked) config on a details page, null in
 * the guide. `onChange()` runs on every edit.
 */
export function createConfigForm({ metadata, savedConfig = null, codeTimeToLiveSeconds, onChange = () => {} }) {
  const template = parseTemplate(metadata.configTemplate);
  const formItems = Array.isArray(metadata.formItems) ? metadata.formItems : [];
  // An edit makes what was said about the field stale: its error and the form's message go.
  const edited = (index) => () => {
    fields[index].setError(null);
    formError.hidden = true;
    formError.textContent = '';
    onChange();
  };
  const fields = formItems.length > 0
    ? formItems.map((item, index) => createField(item, initialValue(item, savedConfig, template), {
        codeTimeToLiveSeconds,
        onChange: edited(index),
        saved: Boolean(savedConfig) && Object.prototype.hasOwnProperty.call(savedConfig, item.key),
      }))
    : [createWholeConfigField(savedConfig ?? template, edited(0))];
  const formError = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const element = h('div', { class: 'config-form' }, fields.map((field) => field.element), formError);
  const initialSnapshot = () => fields.map((field) => field.snapshotAtStart);

  function clearErrors() {
    for (const field of fields) field.setError(null);
    formError.hidden = true;
    formError.textContent = '';
  }

  function fieldFor(key) {
    return fields.find((field) => field.key === key) || null;
  }

  return {
    element,
    /** `{config, problems: [{key, message}]}`, showing each problem on its field. */
    collect() {
      clearErrors();
      const config = savedConfig && typeof savedConfig === 'object' && !Array.isArray(savedConfig) ? structuredClone(savedConfig) : {};
      const problems = [];
      let wholeConfig = null;
      for (const field of fields) {
        const outcome = field.read();
        if (outcome.problem) {
          problems.push({ key: field.key, message: outcome.problem });
          field.setError(outcome.problem);
        } else if (field.key === null) {
          wholeConfig = outcome.value;
        } else if (outcome.keepSaved) {
          // Untouched: the saved value stays exactly as it was (null included).
        } else if (outcome.value === undefined) {
          delete config[field.key];
        } else {
          config[field.key] = outcome.value;
        }
      }
      return { config: wholeConfig ?? config, problems };
    },
    /** Shows the host's `data.errors` on their fields; returns the messages no field took. */
    showServerErrors(errors) {
      const unplaced = [];
      for (const error of errors || []) {
        const field = fieldFor(formKeyOfPath(error.field, error.message)) || (fields.length === 1 && fields[0].key === null ? fields[0] : null);
        const text = error.field && error.field !== '.' && field && error.field !== field.key ? `${error.field}: ${error.message}` : error.message;
        if (field) field.setError(text, true);
        else unplaced.push(text);
      }
      if (unplaced.length > 0) {
        formError.hidden = false;
        formError.textContent = unplaced.join(' ');
      }
      return unplaced;
    },
    /** Shows a message on one field (e.g. template_not_found on the templates editor). */
    showFieldError(key, message) {
      const field = fieldFor(key);
      if (!field) return false;
      field.setError(message, true);
      return true;
    },
    /** Shows why a save failed (field errors on their fields); returns the status line. */
    showSaveFailure(error) {
      if (error instanceof ApiError && error.code === 'connector.invalid_config' && Array.isArray(error.data?.errors)) {
        this.showServerErrors(error.data.errors);
        this.focusFirstError();
        return 'Not saved: the connector refused this configuration. See the highlighted fields.';
      }
      return `Not saved: ${asSentence(error.message)}`;
    },
    showFormError(message) {
      formError.hidden = false;
      formError.textContent = message;
    },
    clearErrors,
    /** Focuses the first field (a JSON editor at its top). */
    focusFirstField() {
      fields[0].focus();
    },
    focusFirstError() {
      const field = fields.find((candidate) => candidate.hasError());
      if (field) field.focus();
    },
    hasField: (key) => fieldFor(key) !== null,
    isDirty: () => !sameJson(fields.map((field) => field.snapshot()), initialSnapshot()),
    hasInvalidJson: () => fields.some((field) => field.hasInvalidJson()),
    reset() {
      clearErrors();
      for (const field of fields) field.reset();
    },
  };
}

/**
 * A submit handler for a form holding the config form: collects the typed config (problems
 * shown on their fields), disables `saveButton` while `save(config)` runs, and reports in
 * `saveStatus` why a save failed.
 */
export function saveOnSubmit({ form, saveButton, saveStatus, save, shouldSave = () => true }) {
  return async (event) => {
    event.preventDefault();
    if (saveButton.disabled || !shouldSave()) return;
    const { config, problems } = form.collect();
    if (problems.length > 0) {
      saveStatus.textContent = 'Fix the highlighted fields to save.';
      form.focusFirstError();
      return;
    }
    saveButton.disabled = true;
    saveStatus.textContent = 'Saving…';
    try {
      await save(config);
    } catch (error) {
      saveButton.disabled = false;
      saveStatus.textContent = form.showSaveFailure(error);
    }
  };
}

function initialValue(item, savedConfig, template) {
  if (savedConfig) return savedConfig[item.key];
  // The template's JSON keeps the vendor's key order; a default value went through the
  // plugin's serializer, which may have sorted it.
  if (item.type === 'Json' && template[item.key] !== undefined) return template[item.key];
  if (item.defaultValue !== undefined && item.defaultValue !== null) return item.defaultValue;
  return undefined;
}

function textOf(value) {
  if (value === undefined || value === null) return '';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** One form item: label, control, description, error; and how to read its typed value. */
function createField(item, value, { codeTimeToLiveSeconds, onChange, saved }) {
  const id = uniqueId('field');
  const descriptionId = uniqueId('field-description');
  const errorId = uniqueId('field-error');
  const label = localized(item.label) || item.key;
  const error = h('p', { id: errorId, class: 'field-error', 'aria-live': 'polite', hidden: true });
  const description = [item.description, item.tooltip].filter((text) => typeof text === 'string' && text.trim());
  const describedBy = [description.length ? descriptionId : '', errorId].filter(Boolean).join(' ');
  const requiredMark = item.required ? h('span', { class: 'required-mark', 'aria-hidden': 'true' }, '*') : null;
  const labelId = uniqueId('field-label');
  const isTemplates = item.type === 'Json' && item.key === 'templates';
  const warning = isTemplates ? h('p', { class: 'field-warning', 'data-testid': 'template-warning', 'aria-live': 'polite', hidden: true }) : null;
  let updateWarning = () => {};
  const control = buildControl(item, value, { id, labelId, describedBy, label, onChange: () => { updateWarning(); onChange(); } });
  let hasServerError = false;
  const labelElement = control.labelled === false ? null : h('label', { class: 'field-label', for: id, id: labelId }, label, requiredMark);
  // A label's `for` cannot reach the code editor (an editable div): a click on it focuses it.
  if (labelElement && item.type === 'Json') labelElement.addEventListener('click', () => control.focus());

  // The error sits right under what it is about, before the help, so it is seen.
  const element = h('div', { class: 'field', 'data-field-key': item.key, 'data-field-type': item.type },
    labelElement,
    control.element,
    error,
    warning,
    description.length ? h('p', { id: descriptionId, class: 'field-description' }, description.join(' ')) : null,
    isTemplates ? templatesHelp(codeTimeToLiveSeconds) : null,
  );
  if (warning) {
    updateWarning = () => {
      const text = templatesWithoutCode(control.snapshot());
      warning.hidden = !text;
      warning.textContent = text;
    };
    control.afterReset = updateWarning;
    updateWarning();
  }
  const snapshotAtStart = control.snapshot();

  return {
    key: item.key,
    element,
    snapshotAtStart,
    snapshot: control.snapshot,
    read() {
      const raw = control.snapshot();
      if (saved && sameJson(raw, snapshotAtStart)) return { keepSaved: true };
      const outcome = control.read();
      if (outcome.problem) return outcome;
      const empty = outcome.value === undefined || (Array.isArray(outcome.value) && outcome.value.length === 0 && item.type === 'MultiSelect');
      if (item.required && empty && item.type !== 'Switch') return { problem: `${label} is required.` };
      return outcome;
    },
    setError(message, fromServer = false) {
      hasServerError = Boolean(message) && fromServer;
      if (control.showsProblem) control.showsProblem(Boolean(message));
      error.hidden = !message;
      error.textContent = message || '';
      element.classList.toggle('field-invalid', Boolean(message));
      for (const input of element.querySelectorAll('input, textarea, select')) {
        if (message) input.setAttribute('aria-invalid', 'true');
        else if (!input.hasAttribute('data-json-editor')) input.removeAttribute('aria-invalid');
      }
    },
    hasError: () => !error.hidden || hasServerError,
    hasInvalidJson: () => control.hasInvalidJson(),
    focus: () => control.focus(),
    reset: () => {
      control.reset();
      if (control.afterReset) control.afterReset();
    },
  };
}

/**
 * Templates with their keys in the order people write them (usageType, locale, content, then
 * the rest): the host keeps a config's keys sorted, which put `content` before `usageType`.
 */
export function inTemplateKeyOrder(templates) {
  if (!Array.isArray(templates)) return templates;
  const leading = ['usageType', 'locale', 'content'];
  return templates.map((template) => {
    if (!template || typeof template !== 'object' || Array.isArray(template)) return template;
    const ordered = {};
    for (const key of leading) if (Object.prototype.hasOwnProperty.call(template, key)) ordered[key] = template[key];
    for (const [key, entry] of Object.entries(template)) if (!leading.includes(key)) ordered[key] = entry;
    return ordered;
  });
}

// Usage types whose message carries a verification code (all but an invitation's link).
const CODE_BEARING_TYPES = new Set(['Register', 'SignIn', 'ForgotPassword', 'Generic', 'UserPermissionValidation', 'BindNewIdentifier', 'MfaVerification', 'BindMfa']);

/** A warning when a code-bearing template lacks `{{code}}`: its message would carry no code. */
export function templatesWithoutCode(text) {
  let templates;
  try {
    templates = JSON.parse(text);
  } catch {
    return '';
  }
  if (!Array.isArray(templates)) return '';
  const missing = templates
    .filter((template) => template && CODE_BEARING_TYPES.has(template.usageType) && typeof template.content === 'string' && !template.content.includes('{{code}}'))
    .map((template) => (template.locale ? `${template.usageType} (${template.locale})` : template.usageType));
  if (missing.length === 0) return '';
  const list = [...new Set(missing)].join(', ');
  return `No {{code}} in the ${list} template${missing.length > 1 ? 's' : ''}: ${missing.length > 1 ? 'their messages' : 'its message'} would not carry the verification code.`;
}

function buildControl(item, value, { id, labelId, describedBy, label, onChange }) {
  const common = { id, 'aria-describedby': describedBy, 'aria-required': item.required ? 'true' : null, name: item.key };
  const plain = (element, read) => ({
    element,
    read,
    snapshot: () => element.value,
    hasInvalidJson: () => false,
    focus: () => element.focus(),
    reset: () => { element.value = textOf(value); },
  });
  switch (item.type) {
    case 'MultilineText': {
      const textarea = h('textarea', { ...common, rows: 5, placeholder: item.placeholder, oninput: onChange });
      textarea.value = textOf(value);
      return plain(textarea, () => ({ value: textarea.value === '' ? undefined : textarea.value }));
    }
    case 'Number': {
      const input = h('input', { ...common, type: 'number', step: 'any', inputmode: 'decimal', placeholder: item.placeholder, oninput: onChange });
      input.value = typeof value === 'number' ? String(value) : textOf(value);
      return plain(input, () => {
        if (input.value.trim() === '') {
          return input.validity.badInput ? { problem: `${label} must be a number.` } : { value: undefined };
        }
        const number = Number(input.value);
        return Number.isFinite(number) ? { value: number } : { problem: `${label} must be a number.` };
      });
    }
    case 'Switch': {
      const checkbox = h('input', { ...common, type: 'checkbox', role: 'switch', onchange: onChange });
      checkbox.checked = value === true;
      return {
        element: h('label', { class: 'switch', for: id }, checkbox, h('span', { class: 'switch-track', 'aria-hidden': 'true' }), h('span', {}, label)),
        labelled: false,
        read: () => ({ value: checkbox.checked }),
        snapshot: () => checkbox.checked,
        hasInvalidJson: () => false,
        focus: () => checkbox.focus(),
        reset: () => { checkbox.checked = value === true; },
      };
    }
    case 'Select': {
      const choices = Array.isArray(item.selectItems) ? item.selectItems : [];
      const select = h('select', { ...common, onchange: onChange },
        h('option', { value: '' }, item.placeholder || 'Choose…'),
        choices.map((choice, index) => h('option', { value: String(index) }, localized(choice.title) || textOf(choice.value))),
      );
      const initialIndex = choices.findIndex((choice) => sameJson(choice.value, value));
      select.value = initialIndex >= 0 ? String(initialIndex) : '';
      return {
        ...plain(select, () => ({ value: select.value === '' ? undefined : choices[Number(select.value)].value })),
        reset: () => { select.value = initialIndex >= 0 ? String(initialIndex) : ''; },
      };
    }
    case 'MultiSelect': {
      const choices = Array.isArray(item.selectItems) ? item.selectItems : [];
      const selected = Array.isArray(value) ? value : [];
      const boxes = choices.map((choice) => {
        const box = h('input', { type: 'checkbox', onchange: onChange });
        box.checked = selected.some((entry) => sameJson(entry, choice.value));
        return box;
      });
      const group = h('fieldset', { class: 'multi-select', id, 'aria-describedby': describedBy },
        h('legend', { class: 'field-label' }, label, item.required ? h('span', { class: 'required-mark', 'aria-hidden': 'true' }, '*') : null),
        choices.map((choice, index) => h('label', { class: 'checkbox' }, boxes[index], h('span', {}, localized(choice.title) || textOf(choice.value)))),
      );
      return {
        element: group,
        labelled: false,
        read: () => ({ value: choices.filter((_, index) => boxes[index].checked).map((choice) => choice.value) }),
        snapshot: () => boxes.map((box) => box.checked),
        hasInvalidJson: () => false,
        focus: () => (boxes[0] ? boxes[0].focus() : group.focus()),
        reset: () => boxes.forEach((box, index) => { box.checked = selected.some((entry) => sameJson(entry, choices[index].value)); }),
      };
    }
    case 'Json': {
      const shown = item.key === 'templates' ? inTemplateKeyOrder(value) : value;
      const initialText = shown === undefined ? '' : formatJson(shown);
      const rows = Math.min(16, Math.max(4, initialText.split('\n').length + 1));
      const editor = createJsonEditor({ id, text: initialText, rows, describedBy, labelledBy: labelId, required: Boolean(item.required), onChange: () => onChange() });
      return {
        element: editor.element,
        read: () => {
          const result = editor.result();
          if (!result.ok) return { problem: result.message };
          return { value: result.value };
        },
        snapshot: () => editor.value(),
        hasInvalidJson: () => !editor.result().ok,
        focus: () => editor.focus(),
        reset: () => editor.setValue(initialText),
        showsProblem: editor.showsProblem,
      };
    }
    default: {
      // Text, and any type this console does not know yet (as Logto does).
      const secret = isSecretKey(item);
      const input = h('input', { ...common, type: secret ? 'password' : 'text', placeholder: item.placeholder, autocomplete: secret ? 'new-password' : 'off', spellcheck: 'false', oninput: onChange });
      input.value = textOf(value);
      if (!secret) {
        return plain(input, () => ({ value: input.value === '' ? undefined : input.value }));
      }
      const toggle = h('button', { type: 'button', class: 'button button-small reveal-toggle', 'aria-pressed': 'false', 'aria-controls': id }, 'Show');
      toggle.addEventListener('click', () => {
        // The saved secret never comes back from the host: showing the mask would show
        // "******" as if it were the value.
        if (input.type === 'password' && input.value === MASK) {
          revealNote.hidden = false;
          revealNote.textContent = 'The saved value is kept and hidden: the host never sends it back, so it cannot be shown. Type a new value to replace it.';
          return;
        }
        revealNote.hidden = true;
        const reveal = input.type === 'password';
        input.type = reveal ? 'text' : 'password';
        toggle.textContent = reveal ? 'Hide' : 'Show';
        toggle.setAttribute('aria-pressed', String(reveal));
      });
      const savedHint = value === MASK ? h('p', { class: 'field-description secret-hint' }, `A value is saved and hidden. Leave ${MASK} as it is to keep it, type a new value to replace it, or clear the field to remove it.`) : null;
      const revealNote = h('p', { class: 'field-description reveal-note', role: 'status', hidden: true });
      input.addEventListener('input', () => { revealNote.hidden = true; });
      return {
        ...plain(input, () => ({ value: input.value === '' ? undefined : input.value })),
        element: h('div', { class: 'secret-field' }, h('div', { class: 'input-with-button' }, input, toggle), revealNote, savedHint),
      };
    }
  }
}

/** A factory without form items: the whole config as one JSON object. */
function createWholeConfigField(value, onChange) {
  const id = uniqueId('field');
  const errorId = uniqueId('field-error');
  const labelId = uniqueId('field-label');
  const initialText = formatJson(value ?? {});
  const editor = createJsonEditor({ id, text: initialText, rows: 16, describedBy: errorId, labelledBy: labelId, onChange: () => onChange() });
  const error = h('p', { id: errorId, class: 'field-error', 'aria-live': 'polite', hidden: true });
  const element = h('div', { class: 'field', 'data-field-key': '.', 'data-field-type': 'Json' },
    h('label', { class: 'field-label', for: id, id: labelId, onclick: () => editor.focus() }, 'Configuration (JSON)'),
    editor.element,
    error,
  );
  const snapshotAtStart = editor.value();
  return {
    key: null,
    element,
    snapshotAtStart,
    snapshot: () => editor.value(),
    read() {
      const result = editor.result();
      if (!result.ok) return { problem: result.message };
      if (result.empty || typeof result.value !== 'object' || result.value === null || Array.isArray(result.value)) {
        return { problem: 'The configuration must be a JSON object.' };
      }
      return { value: result.value };
    },
    setError(message) {
      editor.showsProblem(Boolean(message));
      error.hidden = !message;
      error.textContent = message || '';
      element.classList.toggle('field-invalid', Boolean(message));
    },
    hasError: () => !error.hidden,
    hasInvalidJson: () => !editor.result().ok,
    focus: () => editor.focus(),
    reset: () => editor.setValue(initialText),
  };
}
