// Modal dialogs, a drawer, a confirmation and a menu, usable with the keyboard alone: focus
// moves into a dialog and stays there (Tab wraps), Escape closes it, and focus returns to
// what opened it.

import { h, uniqueId } from './dom.js';

const FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]):not([type="hidden"]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

function focusableIn(element) {
  return [...element.querySelectorAll(FOCUSABLE)].filter((candidate) => candidate.getClientRects().length > 0);
}

const openDialogs = [];

/**
 * Opens a dialog. `body` and `footer` are nodes; `variant` is `modal` (centred) or `drawer`
 * (from the right). Returns `{element, close}`; `onClose` runs once, however it closes.
 */
export function openDialog({ title, description, body, footer, variant = 'modal', onClose, labelledBy, testId }) {
  const opener = document.activeElement;
  const titleId = uniqueId('dialog-title');
  const descriptionId = description ? uniqueId('dialog-description') : null;
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    backdrop.remove();
    for (const element of madeInert) element.inert = false;
    document.removeEventListener('keydown', onKeyDown, true);
    openDialogs.splice(openDialogs.indexOf(dialog), 1);
    if (opener && typeof opener.focus === 'function' && document.contains(opener)) opener.focus();
    if (onClose) onClose();
  };
  const closeButton = h('button', { type: 'button', class: 'icon-button dialog-close', 'aria-label': 'Close', onclick: close }, '×');
  const dialog = h(
    'div',
    {
      class: `dialog dialog-${variant}`,
      role: 'dialog',
      'aria-modal': 'true',
      'aria-labelledby': labelledBy || titleId,
      'aria-describedby': descriptionId,
      'data-testid': testId,
    },
    h('div', { class: 'dialog-header' }, h('h2', { id: titleId, class: 'dialog-title' }, title), closeButton),
    description ? h('p', { id: descriptionId, class: 'dialog-description' }, description) : null,
    h('div', { class: 'dialog-body' }, body),
    footer ? h('div', { class: 'dialog-footer' }, footer) : null,
  );
  const backdrop = h('div', { class: `backdrop backdrop-${variant}` }, dialog);
  backdrop.addEventListener('mousedown', (event) => {
    if (event.target === backdrop) close();
  });
  function onKeyDown(event) {
    if (openDialogs[openDialogs.length - 1] !== dialog) return;
    if (event.key === 'Escape') {
      event.preventDefault();
      event.stopPropagation();
      close();
    } else if (event.key === 'Tab') {
      const focusable = focusableIn(dialog);
      if (focusable.length === 0) return;
      const first = focusable[0];
      const last = focusable[focusable.length - 1];
      if (event.shiftKey && (document.activeElement === first || !dialog.contains(document.activeElement))) {
        event.preventDefault();
        last.focus();
      } else if (!event.shiftKey && (document.activeElement === last || !dialog.contains(document.activeElement))) {
        event.preventDefault();
        first.focus();
      }
    }
  }
  document.addEventListener('keydown', onKeyDown, true);
  document.body.append(backdrop);
  // Everything behind the dialog is inert (no Tab, no click, hidden from assistive
  // technology); the toasts stay, so a result is still announced.
  const madeInert = [...document.body.children].filter((element) => element !== backdrop && element.id !== 'toasts' && !element.inert);
  for (const element of madeInert) element.inert = true;
  openDialogs.push(dialog);
  const preferred = dialog.querySelector('[data-autofocus]') || focusableIn(dialog.querySelector('.dialog-body'))[0] || closeButton;
  preferred.focus();
  return { element: dialog, close };
}

/** Asks a yes/no question; resolves to true when confirmed. */
export function confirmDialog({ title, message, confirmLabel, danger = false }) {
  return new Promise((resolve) => {
    let answer = false;
    const cancel = h('button', { type: 'button', class: 'button', 'data-autofocus': true }, 'Cancel');
    const confirm = h('button', { type: 'button', class: danger ? 'button button-danger' : 'button button-primary' }, confirmLabel);
    const dialog = openDialog({
      title,
      body: h('p', {}, message),
      footer: [cancel, confirm],
      testId: 'confirm-dialog',
      onClose: () => resolve(answer),
    });
    cancel.addEventListener('click', dialog.close);
    confirm.addEventListener('click', () => {
      answer = true;
      dialog.close();
    });
  });
}

/**
 * A "⋯" button with a menu of `{label, onSelect, danger}` items: arrow keys move, Enter picks,
 * Escape or a click elsewhere closes and gives focus back to the button.
 */
export function menuButton({ label, items }) {
  const menuId = uniqueId('menu');
  const button = h('button', { type: 'button', class: 'button menu-button', 'aria-haspopup': 'menu', 'aria-expanded': 'false', 'aria-controls': menuId, 'aria-label': label, title: label }, '⋯');
  const entries = items.map((item) =>
    h('button', { type: 'button', role: 'menuitem', tabindex: '-1', class: item.danger ? 'menu-item menu-item-danger' : 'menu-item', onclick: () => { close(false); item.onSelect(); } }, item.label),
  );
  const menu = h('div', { class: 'menu', role: 'menu', id: menuId, hidden: true }, entries);
  const wrapper = h('div', { class: 'menu-wrapper' }, button, menu);
  const onOutside = (event) => {
    if (!wrapper.contains(event.target)) close(false);
  };
  function open() {
    menu.hidden = false;
    button.setAttribute('aria-expanded', 'true');
    entries[0].focus();
    document.addEventListener('mousedown', onOutside);
  }
  function close(returnFocus) {
    menu.hidden = true;
    button.setAttribute('aria-expanded', 'false');
    document.removeEventListener('mousedown', onOutside);
    if (returnFocus) button.focus();
  }
  button.addEventListener('click', () => (menu.hidden ? open() : close(true)));
  button.addEventListener('keydown', (event) => {
    if (event.key === 'ArrowDown') {
      event.preventDefault();
      open();
    }
  });
  menu.addEventListener('keydown', (event) => {
    const index = entries.indexOf(document.activeElement);
    if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
      event.preventDefault();
      const step = event.key === 'ArrowDown' ? 1 : -1;
      entries[(index + step + entries.length) % entries.length].focus();
    } else if (event.key === 'Escape' || event.key === 'Tab') {
      if (event.key === 'Escape') event.preventDefault();
      close(event.key === 'Escape');
    } else if (event.key === 'Home' || event.key === 'End') {
      event.preventDefault();
      entries[event.key === 'Home' ? 0 : entries.length - 1].focus();
    }
  });
  return wrapper;
}
