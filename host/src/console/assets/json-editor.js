// A JSON editor: a monospace textarea checked with JSON.parse on every keystroke, the error
// shown with its line and column, a Format button, and Tab inserting two spaces (Escape, then
// Tab, moves on, so the keyboard is never trapped).

import { h, uniqueId } from './dom.js';

/** Where JSON.parse stopped, as {line, column}, when the engine says (V8: "at position N"). */
function errorLocation(text, error) {
  const position = /position (\d+)/.exec(error.message);
  if (position) {
    const offset = Number(position[1]);
    const before = text.slice(0, offset).split('\n');
    return { line: before.length, column: before[before.length - 1].length + 1 };
  }
  const lineColumn = /line (\d+) column (\d+)/.exec(error.message);
  if (lineColumn) return { line: Number(lineColumn[1]), column: Number(lineColumn[2]) };
  if (/end of (JSON )?input|Unexpected end/i.test(error.message)) {
    const lines = text.split('\n');
    return { line: lines.length, column: lines[lines.length - 1].length + 1 };
  }
  return null;
}

/** The parse outcome of a text: `{ok: true, value}` or `{ok: false, message}`. */
export function parseJson(text) {
  if (text.trim() === '') return { ok: true, value: undefined, empty: true };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    const location = errorLocation(text, error);
    const reason = error.message.replace(/^JSON\.parse: /, '').replace(/ (in JSON )?at position \d+.*$/, '').replace(/, "[^"]*"\.{3} is not valid JSON$/, '');
    const where = location ? ` at line ${location.line}, column ${location.column}` : '';
    return { ok: false, message: `Invalid JSON${where}: ${reason}` };
  }
}

/** Pretty-prints a JSON value the way the editor shows it. */
export function formatJson(value) {
  return JSON.stringify(value, null, 2);
}

/**
 * A JSON editor. `onChange(result)` runs on every edit with the parse result. Returns
 * `{element, textarea, value(), setValue(text), result(), focus()}`.
 */
export function createJsonEditor({ id = uniqueId('json'), text = '', rows = 10, describedBy = '', onChange = () => {}, ariaLabel }) {
  const statusId = uniqueId('json-status');
  const textarea = h('textarea', {
    id,
    class: 'json-editor-text',
    rows,
    spellcheck: 'false',
    autocapitalize: 'off',
    autocomplete: 'off',
    'aria-label': ariaLabel,
    'aria-describedby': [statusId, describedBy].filter(Boolean).join(' '),
    'data-json-editor': true,
  });
  textarea.value = text;
  const status = h('p', { id: statusId, class: 'json-status', 'aria-live': 'polite' });
  const formatButton = h('button', { type: 'button', class: 'button button-small' }, 'Format');
  const element = h('div', { class: 'json-editor' },
    textarea,
    h('div', { class: 'json-editor-bar' }, status, h('span', { class: 'hint' }, 'Tab indents; Esc then Tab moves on'), formatButton),
  );

  let current = parseJson(text);
  let tabReleased = false;
  // Valid JSON the connector refused: the status must not say "Valid JSON" beside a red editor.
  let refused = false;

  function check() {
    current = parseJson(textarea.value);
    if (!current.ok) status.textContent = current.message;
    else if (refused) status.textContent = 'Refused: see the message below.';
    else status.textContent = current.empty ? '' : 'Valid JSON';
    status.classList.toggle('json-status-error', !current.ok || refused);
    textarea.setAttribute('aria-invalid', current.ok ? 'false' : 'true');
    formatButton.disabled = !current.ok || current.empty;
    return current;
  }

  textarea.addEventListener('input', () => onChange(check()));
  textarea.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') {
      tabReleased = true;
      return;
    }
    if (event.key !== 'Tab' || event.shiftKey || event.ctrlKey || event.altKey || event.metaKey || tabReleased) {
      if (event.key !== 'Tab') tabReleased = false;
      return;
    }
    event.preventDefault();
    // execCommand keeps the browser's undo history; fall back to editing the value.
    if (!document.execCommand || !document.execCommand('insertText', false, '  ')) {
      const { selectionStart, selectionEnd, value } = textarea;
      textarea.value = `${value.slice(0, selectionStart)}  ${value.slice(selectionEnd)}`;
      textarea.selectionStart = textarea.selectionEnd = selectionStart + 2;
      onChange(check());
    }
  });
  textarea.addEventListener('blur', () => {
    tabReleased = false;
  });
  formatButton.addEventListener('click', () => {
    const result = check();
    if (result.ok && !result.empty) {
      textarea.value = formatJson(result.value);
      onChange(check());
    }
  });
  check();

  return {
    element,
    textarea,
    value: () => textarea.value,
    setValue(newText) {
      textarea.value = newText;
      return check();
    },
    result: () => current,
    showsProblem(shown) {
      refused = shown;
      check();
    },
    focus() {
      // Start at the top: focusing would otherwise scroll to wherever the caret was left.
      if (document.activeElement !== textarea) textarea.setSelectionRange(0, 0);
      textarea.focus();
      textarea.scrollTop = 0;
    },
  };
}
