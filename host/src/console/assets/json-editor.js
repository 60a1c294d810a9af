// A JSON editor on CodeMirror 6 (vendored: codemirror.js, see codemirror-build/README.md):
// line numbers, highlighting, bracket matching, undo, no soft wrapping; checked with
// JSON.parse on every edit, the error shown with its line and column; Format and Copy
// buttons; Tab inserting two spaces (Escape, then Tab, moves on, and Shift+Tab moves back,
// so the keyboard is never trapped).

import { h, notify, uniqueId } from './dom.js';
import {
  Compartment, EditorState, EditorView, bracketMatching, classHighlighter, defaultKeymap, drawSelection,
  highlightActiveLine, highlightActiveLineGutter, history, historyKeymap, indentOnInput, indentUnit, json,
  keymap, lineNumbers, syntaxHighlighting,
} from './codemirror.js';

// The page's nonce for the one <style> element CodeMirror writes its theme into (the host
// puts a fresh one in this meta and in the Content-Security-Policy of each page).
const STYLE_NONCE = document.querySelector('meta[name="style-nonce"]')?.content || '';
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
 * A JSON editor. `onChange(result)` runs on every edit with the parse result. `labelledBy`:
 * the id of its visible label (a label's `for` cannot point at an editable div). Returns
 * `{element, contentElement, value(), setValue(text), result(), focus(), showsProblem(shown)}`.
 */
export function createJsonEditor({ id = uniqueId('json'), text = '', rows = 10, describedBy = '', labelledBy = null, required = false, onChange = () => {}, ariaLabel }) {
  const statusId = uniqueId('json-status');
  const status = h('p', { id: statusId, class: 'json-status', 'aria-live': 'polite' });
  const formatButton = h('button', { type: 'button', class: 'button button-small' }, 'Format');
  const copyButton = h('button', { type: 'button', class: 'button button-small' }, 'Copy');
  const host = h('div', { class: 'json-editor-host' });
  host.style.setProperty('--editor-rows', String(rows));
  const element = h('div', { class: 'json-editor' },
    host,
    h('div', { class: 'json-editor-bar' }, status, h('span', { class: 'hint' }, 'Tab indents; Esc then Tab moves on'), copyButton, formatButton),
  );

  let current = parseJson(text);
  let tabReleased = false;
  // Valid JSON the connector refused: the status must not say "Valid JSON" beside a red editor.
  let refused = false;
  let quiet = false;
  const attributes = new Compartment();
  const contentAttributes = () => ({
    id,
    'aria-label': ariaLabel || null,
    'aria-labelledby': labelledBy || null,
    'aria-describedby': [statusId, describedBy].filter(Boolean).join(' '),
    'aria-invalid': current.ok && !refused ? 'false' : 'true',
    'aria-multiline': 'true',
    'aria-required': required ? 'true' : null,
    spellcheck: 'false',
    autocapitalize: 'off',
    autocorrect: 'off',
    'data-json-editor': 'true',
  });
  const withoutNulls = (object) => Object.fromEntries(Object.entries(object).filter(([, entry]) => entry !== null));

  const tabKeys = keymap.of([{
    key: 'Tab',
    run: (editor) => {
      if (tabReleased) return false;
      editor.dispatch(editor.state.replaceSelection('  '), { scrollIntoView: true, userEvent: 'input' });
      return true;
    },
  }]);
  const view = new EditorView({
    parent: host,
    state: EditorState.create({
      doc: text,
      extensions: [
        lineNumbers(),
        highlightActiveLineGutter(),
        highlightActiveLine(),
        drawSelection(),
        history(),
        indentOnInput(),
        bracketMatching(),
        indentUnit.of('  '),
        EditorState.tabSize.of(2),
        json(),
        EditorView.cspNonce.of(STYLE_NONCE),
        syntaxHighlighting(classHighlighter),
        tabKeys,
        keymap.of([...defaultKeymap, ...historyKeymap]),
        attributes.of(EditorView.contentAttributes.of(withoutNulls(contentAttributes()))),
        // Chromium types a space at the end of a text node as a no-break space (U+00A0),
        // which JSON does not take as white space: typed text keeps plain spaces.
        EditorState.transactionFilter.of((transaction) => {
          if (!transaction.docChanged || !transaction.isUserEvent('input')) return transaction;
          const spaces = [];
          transaction.changes.iterChanges((_fromA, _toA, fromB, _toB, inserted) => {
            const typed = inserted.toString();
            for (let at = typed.indexOf('\u00a0'); at >= 0; at = typed.indexOf('\u00a0', at + 1)) {
              spaces.push({ from: fromB + at, to: fromB + at + 1, insert: ' ' });
            }
          });
          return spaces.length === 0 ? transaction : [transaction, { changes: spaces, sequential: true }];
        }),
        EditorView.domEventHandlers({
          keydown(event) {
            if (event.key === 'Escape') tabReleased = true;
            else if (event.key !== 'Tab') tabReleased = false;
            return false;
          },
          blur() {
            tabReleased = false;
            return false;
          },
        }),
        EditorView.updateListener.of((update) => {
          if (!update.docChanged) return;
          const result = check();
          if (!quiet) onChange(result);
        }),
      ],
    }),
  });

  function check() {
    current = parseJson(view.state.doc.toString());
    if (!current.ok) status.textContent = current.message;
    else if (refused) status.textContent = 'Refused: see the message below.';
    else status.textContent = current.empty ? '' : 'Valid JSON';
    status.classList.toggle('json-status-error', !current.ok || refused);
    formatButton.disabled = !current.ok || current.empty;
    syncAttributes();
    return current;
  }

  // aria-invalid follows the text; the editor cannot be reconfigured in the middle of the
  // update that reported the edit, so the change goes in right after it.
  let appliedInvalid = contentAttributes()['aria-invalid'];
  function syncAttributes() {
    const wanted = contentAttributes()['aria-invalid'];
    if (wanted === appliedInvalid) return;
    appliedInvalid = wanted;
    queueMicrotask(() => view.dispatch({ effects: attributes.reconfigure(EditorView.contentAttributes.of(withoutNulls(contentAttributes()))) }));
  }

  function replaceText(newText) {
    view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: newText } });
  }

  // For scripts and tests: the text as the editor holds it (what a save would send).
  view.dom.editorText = () => view.state.doc.toString();

  formatButton.addEventListener('click', () => {
    const result = check();
    if (result.ok && !result.empty) replaceText(formatJson(result.value));
  });
  copyButton.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(view.state.doc.toString());
      notify('Copied the JSON.');
    } catch {
      notify('Could not copy: select the text and copy it by hand.', 'error');
    }
  });
  check();

  return {
    element,
    contentElement: view.contentDOM,
    value: () => view.state.doc.toString(),
    setValue(newText) {
      quiet = true;
      try {
        replaceText(newText);
      } finally {
        quiet = false;
      }
      return check();
    },
    result: () => current,
    showsProblem(shown) {
      refused = shown;
      check();
    },
    focus() {
      // Start at the top: focusing would otherwise scroll to wherever the caret was left.
      if (!view.hasFocus) view.dispatch({ selection: { anchor: 0 } });
      view.focus();
      view.scrollDOM.scrollTop = 0;
    },
  };
}
