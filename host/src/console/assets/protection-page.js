// "Protection": the SMS-pumping protection's state (GET /api/protection): the mode, the blocks
// in force with Lift (DELETE /api/protection/blocks/{id}), the allowed countries with a form to
// allow one (POST /api/protection/countries/{region}/allow), and the thresholds and safe-list,
// read-only (start-up flags). The page refreshes itself every 10 s while the tab is visible,
// redrawing only what changed, without moving the focus or the scroll.

import { api, ApiError } from './api.js';
import { asSentence, badge, formatTime, h, loading, notify, replaceChildren, uniqueId } from './dom.js';
import { confirmDialog } from './modal.js';

const REFRESH_INTERVAL_MS = 10_000;

const MODE_SENTENCES = {
  off: 'Off: no layer decides or counts anything, and every send goes out.',
  monitor: 'Monitor: every layer decides and counts, and the log and metrics say what would have been blocked, but no send is refused.',
  enforce: 'Enforce: a send that a layer blocks is refused (429 sms.blocked, with its reason) before anything is reserved or sent.',
};

const REASON_LABELS = {
  ip_velocity: 'Too many sends from one IP address',
  prefix_velocity: 'Too many sends to one number prefix',
  low_conversion: 'Too few codes verified',
  first_seen_country: 'New country, no code verified there yet',
  budget: 'Message budget spent',
  recipient_backoff: 'Repeated sends to one number without a verified code',
};

const KIND_LABELS = {
  prefix: 'Number prefix',
  country: 'Country',
  ip: 'IP address',
  recipient: 'Number',
  global: 'All sends',
};

// The thresholds, grouped by the layer they tune: `settings` key, label, how to show the value.
const LAYERS = [
  {
    reason: 'ip_velocity',
    title: 'IP velocity',
    description: 'Sends per client IP address (IPv6 per /64), when the request gives one.',
    isOn: (settings) => settings.ipVelocityMax > 0,
    items: [['ipVelocityMax', 'Sends per IP address', 'limit'], ['ipVelocityWindowSecs', 'Window', 'duration']],
  },
  {
    reason: 'prefix_velocity',
    title: 'Prefix velocity',
    description: 'Sends per number prefix: the number without its last 4 digits.',
    isOn: (settings) => settings.prefixVelocityMax > 0,
    items: [['prefixVelocityMax', 'Sends per prefix', 'limit'], ['prefixVelocityWindowSecs', 'Window', 'duration']],
  },
  {
    reason: 'low_conversion',
    title: 'Low conversion',
    description: 'Of the codes this host issued, the share verified, per prefix and per country; below the rate, the prefix or country is blocked for a while.',
    isOn: (settings) => settings.lowConversionMinSamples > 0,
    items: [
      ['lowConversionMinRate', 'Lowest verified share', 'rate'],
      ['lowConversionMinSamples', 'Decided codes before judging', 'limit'],
      ['lowConversionWindowSecs', 'Window', 'duration'],
      ['lowConversionBlockSecs', 'A block lasts', 'duration'],
    ],
  },
  {
    reason: 'first_seen_country',
    title: 'First-seen country',
    description: 'Sends to a country where no code was ever verified, until one is or you allow the country.',
    isOn: (settings) => settings.firstSeenCountryMax > 0,
    items: [['firstSeenCountryMax', 'Sends per window', 'limit'], ['firstSeenCountryWindowSecs', 'Window', 'duration']],
  },
  {
    reason: 'budget',
    title: 'Budget',
    description: 'A hard stop on messages per window, in total and per country.',
    isOn: (settings) => settings.dailyBudget > 0 || settings.dailyBudgetPerCountry > 0,
    items: [['dailyBudget', 'Messages in total', 'limit'], ['dailyBudgetPerCountry', 'Messages per country', 'limit'], ['budgetWindowSecs', 'Window', 'duration']],
  },
  {
    reason: 'recipient_backoff',
    title: 'Recipient backoff',
    description: 'After each send to a number without a verified code, the next waits longer: the base wait, doubling up to 32 times it.',
    isOn: (settings) => settings.recipientBackoff === true,
    items: [['recipientBackoff', 'Backoff', 'switch'], ['recipientBackoffBaseSecs', 'Base wait', 'duration']],
  },
];

// Settings shown elsewhere on the page, and the flags whose names are not the key's.
const NOT_THRESHOLDS = new Set(['mode', 'safeList']);
const FLAG_NAMES = { mode: '--protection', safeList: '--protection-safe-list' };

/** `ipVelocityMax` → `--ip-velocity-max`. */
function flagName(key) {
  return FLAG_NAMES[key] || `--${key.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`)}`;
}

function reasonLabel(reason) {
  return REASON_LABELS[reason] || 'Blocked';
}

/** 90 → "1 min 30 s", 3600 → "1 h", 86400 → "1 day". */
function formatDuration(seconds) {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds)) return String(seconds);
  const parts = [];
  let rest = Math.round(seconds);
  for (const [size, unit] of [[86_400, 'day'], [3600, 'h'], [60, 'min'], [1, 's']]) {
    const count = Math.floor(rest / size);
    rest -= count * size;
    if (count > 0) parts.push(unit === 'day' ? `${count} ${count === 1 ? 'day' : 'days'}` : `${count} ${unit}`);
  }
  return parts.length === 0 ? '0 s' : parts.slice(0, 2).join(' ');
}

function formatSetting(value, kind) {
  if (value === undefined || value === null) return '—';
  switch (kind) {
    case 'limit':
      return value === 0 ? 'Off (0)' : value.toLocaleString();
    case 'duration':
      return formatDuration(value);
    case 'rate':
      return typeof value === 'number' ? `${Math.round(value * 1000) / 10} %` : String(value);
    case 'switch':
      return value ? 'On' : 'Off';
    default:
      return typeof value === 'object' ? JSON.stringify(value) : String(value);
  }
}

const relativeTime = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

/** "3 minutes ago", "in 57 minutes": from milliseconds since the epoch. */
function formatRelative(milliseconds, now = Date.now()) {
  const seconds = Math.round((milliseconds - now) / 1000);
  const magnitude = Math.abs(seconds);
  if (magnitude < 60) return relativeTime.format(seconds, 'second');
  if (magnitude < 3600) return relativeTime.format(Math.round(seconds / 60), 'minute');
  if (magnitude < 86_400) return relativeTime.format(Math.round(seconds / 3600), 'hour');
  return relativeTime.format(Math.round(seconds / 86_400), 'day');
}

/** A time shown relative ("3 minutes ago") above its absolute date and time. */
function timeCell(milliseconds) {
  if (typeof milliseconds !== 'number') return '—';
  return h('span', { class: 'block-time' },
    h('span', { class: 'relative-time', 'data-time': milliseconds }, formatRelative(milliseconds)),
    h('time', { class: 'absolute-time', datetime: new Date(milliseconds).toISOString() }, formatTime(milliseconds)));
}

let countryNames = null;
/** "United States" for "US", when the browser knows it. */
function countryName(region) {
  try {
    countryNames = countryNames || new Intl.DisplayNames(undefined, { type: 'region' });
    const name = countryNames.of(region);
    return name && name !== region ? name : null;
  } catch {
    return null;
  }
}

/** The subject as an operator reads it: `+1201555`, `US (United States)`, "All sends". */
function subjectText(block) {
  if (block.kind === 'global') return 'All sends';
  if (block.kind === 'country') {
    const name = countryName(block.subject);
    return name ? `${block.subject} (${name})` : block.subject;
  }
  return block.subject;
}

function subjectCell(block) {
  if (block.kind === 'global') return 'All sends';
  const name = block.kind === 'country' ? countryName(block.subject) : null;
  return [h('code', { class: 'subject' }, block.subject), name ? h('span', { class: 'subject-note' }, name) : null];
}

// Codes are counted per prefix and per country only; other blocks count refused sends.
function codeCount(block, field) {
  if (block.kind !== 'prefix' && block.kind !== 'country') {
    return h('span', { title: 'Codes are counted per number prefix and per country' }, '—');
  }
  return String(block.counts?.[field] ?? 0);
}

export async function renderProtectionPage(container, _params, context) {
  document.title = 'Protection · connector-host console';
  replaceChildren(container, h('h1', {}, 'Protection'), loading());
  let report = await api('GET', '/api/protection');
  if (!context.isCurrent()) return;

  const modeHolder = h('div', {});
  const blocksHeadingId = uniqueId('blocks-heading');
  const blocksHeading = h('h2', { id: blocksHeadingId, tabindex: '-1' }, 'Current blocks');
  const blocksDescription = h('p', { class: 'section-description' });
  // A calm word about a lift that found nothing to lift (it had ended, or someone else lifted it).
  const blocksNotice = h('p', { class: 'notice', role: 'status', 'data-testid': 'blocks-notice', hidden: true });
  const blocksHolder = h('div', {});
  const countriesHolder = h('div', {});
  const thresholdsHolder = h('div', {});
  const safeListHolder = h('div', {});
  const updatedLine = h('p', { class: 'refresh-line', 'data-testid': 'refresh-line' });
  let lastDrawn = {};
  // While a question about a block is open, the table behind it stays as it is.
  let lifting = false;

  /** Redraws the parts whose data changed; the focused Lift button keeps the focus. */
  function draw() {
    const parts = {
      mode: JSON.stringify([report.mode]),
      blocks: JSON.stringify([report.mode, report.blocks]),
      countries: JSON.stringify(report.allowedCountries),
      thresholds: JSON.stringify(report.settings),
    };
    if (parts.mode !== lastDrawn.mode) replaceChildren(modeHolder, modeView(report.mode));
    if (parts.blocks !== lastDrawn.blocks) {
      const focusedBlockId = blocksHolder.contains(document.activeElement) ? document.activeElement.closest('[data-block-id]')?.dataset.blockId : null;
      blocksDescription.textContent = blocksDescriptionText(report.mode);
      replaceChildren(blocksHolder, blocksView(report.blocks, report.mode, liftBlock));
      if (focusedBlockId) {
        const sameButton = blocksHolder.querySelector(`[data-block-id="${CSS.escape(focusedBlockId)}"] .lift-button`);
        (sameButton || blocksHeading).focus({ preventScroll: true });
      }
    } else {
      // Unchanged blocks: only their relative times move on.
      for (const element of blocksHolder.querySelectorAll('.relative-time')) {
        element.textContent = formatRelative(Number(element.dataset.time));
      }
    }
    if (parts.countries !== lastDrawn.countries) replaceChildren(countriesHolder, allowedCountriesView(report.allowedCountries));
    if (parts.thresholds !== lastDrawn.thresholds) {
      replaceChildren(thresholdsHolder, thresholdsView(report.settings));
      replaceChildren(safeListHolder, safeListView(report.settings?.safeList));
    }
    lastDrawn = parts;
    updatedLine.textContent = `Updated ${new Date().toLocaleTimeString()}. This page refreshes every 10 seconds while it is in view.`;
    updatedLine.classList.remove('refresh-line-error');
  }

  // One load at a time, in order: a poll's answer never overwrites a newer one.
  let loads = Promise.resolve();
  function refresh() {
    loads = loads.then(async () => {
      try {
        const next = await api('GET', '/api/protection');
        if (!context.isCurrent()) return;
        report = next;
        draw();
      } catch (error) {
        if (!context.isCurrent()) return;
        updatedLine.textContent = `Could not refresh: ${asSentence(error.message)} Trying again in 10 seconds.`;
        updatedLine.classList.add('refresh-line-error');
      }
    });
    return loads;
  }

  async function liftBlock(block, button) {
    const subject = subjectText(block);
    lifting = true;
    let confirmed;
    try {
      confirmed = await confirmDialog({
        title: `Lift the block on ${subject}?`,
        message: `Sends to ${block.kind === 'global' ? 'every number' : subject} go out again at once, and the layer's counts for it start over. If the traffic goes on, the layer may block it again.`,
        confirmLabel: 'Lift block',
      });
    } finally {
      lifting = false;
    }
    if (!confirmed) return;
    blocksNotice.hidden = true;
    const rows = [...blocksHolder.querySelectorAll('[data-block-id]')];
    const position = rows.findIndex((row) => row.dataset.blockId === block.id);
    const hadFocus = document.activeElement === button;
    button.setAttribute('aria-disabled', 'true');
    try {
      await api('DELETE', `/api/protection/blocks/${encodeURIComponent(block.id)}`);
      notify(`Lifted the block on ${subject}.`);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) {
        button.removeAttribute('aria-disabled');
        notify(`The block on ${subject} could not be lifted: ${asSentence(error.message)}`, 'error');
        return;
      }
      blocksNotice.textContent = `The block on ${subject} had already ended or been lifted. The list below is up to date.`;
      blocksNotice.hidden = false;
    }
    await refresh();
    if (!context.isCurrent()) return;
    // The button is gone with its row: the focus goes to the row now in its place, or the
    // heading when no block is left.
    if (hadFocus || !document.contains(document.activeElement) || document.activeElement === document.body) {
      const buttons = [...blocksHolder.querySelectorAll('.lift-button')];
      const next = buttons[Math.min(position, buttons.length - 1)];
      (next || blocksHeading).focus({ preventScroll: true });
    }
  }

  replaceChildren(container,
    h('h1', {}, 'Protection'),
    modeHolder,
    h('section', { class: 'card', 'aria-labelledby': blocksHeadingId, 'data-testid': 'protection-blocks' },
      blocksHeading,
      blocksDescription,
      blocksNotice,
      blocksHolder),
    allowCountrySection(countriesHolder, refresh),
    h('section', { class: 'card', 'aria-labelledby': 'thresholds-heading', 'data-testid': 'protection-thresholds' },
      h('h2', { id: 'thresholds-heading' }, 'Thresholds'),
      h('p', { class: 'section-description' }, 'Set with start-up flags of ', h('code', {}, 'connector-host serve'), ' (or their CONNECTOR_HOST_… environment variables): to change one, restart the host with the new value. A limit of 0 turns its layer off.'),
      thresholdsHolder),
    h('section', { class: 'card', 'aria-labelledby': 'safe-list-heading', 'data-testid': 'protection-safe-list' },
      h('h2', { id: 'safe-list-heading' }, 'Safe-list'),
      h('p', { class: 'section-description' }, 'Numbers and prefixes that bypass every layer, set with ', h('code', {}, flagName('safeList')), ' at start-up.'),
      safeListHolder),
    updatedLine);
  draw();
  keepRefreshing(refresh, { isActive: () => context.isCurrent() && !lifting, isOpen: context.isCurrent });
}

/**
 * Calls `refresh` every 10 s while the page is open and the tab visible (a hidden tab asks
 * nothing, and catches up as soon as it is shown again), skipping a turn while `isActive()`
 * is false. Stops when `isOpen()` is false: the screen was left.
 */
function keepRefreshing(refresh, { isActive, isOpen }) {
  let timer = null;
  let inFlight = false;
  const stop = () => {
    clearTimeout(timer);
    document.removeEventListener('visibilitychange', onVisibilityChange);
  };
  async function tick() {
    clearTimeout(timer);
    timer = null;
    if (!isOpen()) {
      stop();
      return;
    }
    if (!document.hidden && !inFlight && isActive()) {
      inFlight = true;
      try {
        await refresh();
      } finally {
        inFlight = false;
      }
    }
    if (isOpen() && timer === null) timer = setTimeout(tick, REFRESH_INTERVAL_MS);
  }
  function onVisibilityChange() {
    if (!isOpen()) stop();
    else if (!document.hidden) tick();
  }
  document.addEventListener('visibilitychange', onVisibilityChange);
  timer = setTimeout(tick, REFRESH_INTERVAL_MS);
}

function modeView(mode) {
  const sentence = MODE_SENTENCES[mode] || `Mode ${mode}.`;
  const banner = mode === 'monitor'
    ? h('div', { class: 'notice notice-warning protection-banner', role: 'note', 'data-testid': 'monitor-banner' },
        h('strong', {}, 'Monitor mode: deciding and counting, blocking nothing. '),
        'Blocks below show what enforce mode would refuse; every send still goes out.')
    : mode === 'off'
      ? h('div', { class: 'notice notice-warning protection-banner', role: 'note', 'data-testid': 'off-banner' },
          h('strong', {}, 'Protection is off. '), 'Nothing is decided or counted; SMS pumping is not stopped.')
      : null;
  const kind = mode === 'enforce' ? 'live' : mode === 'monitor' ? 'warning' : 'neutral';
  return [
    banner,
    h('section', { class: 'card', 'aria-labelledby': 'mode-heading', 'data-testid': 'protection-mode' },
      h('h2', { id: 'mode-heading' }, 'Mode ', badge(mode, kind)),
      h('p', { class: 'mode-sentence' }, sentence),
      h('p', { class: 'field-description' }, 'Set with ', h('code', {}, `${flagName('mode')} off|monitor|enforce`), ' at start-up.')),
  ];
}

function blocksDescriptionText(mode) {
  if (mode === 'monitor') return 'What a layer would block, with why, since and until when. In monitor mode these sends still go out.';
  return 'Sends refused now, with why, since and until when. Lift a block to let its sends go again.';
}

function blocksView(blocks, mode, liftBlock) {
  if (!Array.isArray(blocks) || blocks.length === 0) {
    const text = mode === 'off'
      ? 'No sends are blocked: protection is off.'
      : mode === 'monitor'
        ? 'No sends are blocked, and no layer would block any now.'
        : 'No sends are blocked. When a layer blocks a number prefix, country, IP address or number, it shows here with its reason, and you can lift it.';
    return h('p', { class: 'empty-state', 'data-testid': 'no-blocks' }, text);
  }
  // [column, title, cell]; in monitor mode the refused sends went out all the same.
  const columns = [
    ['subject', 'Subject', subjectCell],
    ['kind', 'Kind', (block) => KIND_LABELS[block.kind] || block.kind],
    ['reason', 'Reason', (block) => [h('span', { class: 'reason-label' }, reasonLabel(block.reason)), h('code', { class: 'reason-code' }, block.reason)]],
    ['since', 'Since', (block) => timeCell(block.since)],
    ['until', 'Until', (block) => (typeof block.until === 'number' ? timeCell(block.until) : h('span', { class: 'block-time' }, 'Until lifted'))],
    ['issued', 'Issued', (block) => codeCount(block, 'issued')],
    ['verified', 'Verified', (block) => codeCount(block, 'verified')],
    ['blocked', mode === 'monitor' ? 'Would block' : 'Blocked', (block) => String(block.counts?.blocked ?? 0)],
    ['action', '', (block) => liftButton(block, liftBlock)],
  ];
  const numeric = new Set(['issued', 'verified', 'blocked']);
  return h('div', { class: 'table-scroll' },
    h('table', { class: 'blocks-table', 'data-testid': 'blocks-table' },
      h('caption', { class: 'visually-hidden' }, mode === 'monitor' ? 'Sends that would be blocked' : 'Blocked sends'),
      h('thead', {}, h('tr', {}, columns.map(([column, title]) => h('th', { scope: 'col', class: numeric.has(column) ? 'numeric' : null }, title || h('span', { class: 'visually-hidden' }, 'Action'))))),
      h('tbody', {}, blocks.map((block) => h('tr', { 'data-block-id': block.id, 'data-reason': block.reason },
        columns.map(([column, title, cell]) => h('td', { 'data-label': title || null, 'data-column': column, class: numeric.has(column) ? 'numeric' : null }, h('div', { class: 'cell-content' }, cell(block)))))))));
}

function liftButton(block, liftBlock) {
  const button = h('button', { type: 'button', class: 'button button-small lift-button', 'aria-label': `Lift the block on ${subjectText(block)}` }, 'Lift');
  button.addEventListener('click', () => {
    if (button.getAttribute('aria-disabled') === 'true') return;
    liftBlock(block, button);
  });
  return button;
}

function allowedCountriesView(countries) {
  if (!Array.isArray(countries) || countries.length === 0) {
    return h('p', { class: 'empty-state', 'data-testid': 'no-allowed-countries' }, 'None allowed here yet. Countries given with ', h('code', {}, '--allowed-countries'), ', and countries where a code was verified, are not throttled either.');
  }
  return h('ul', { class: 'country-list', 'aria-label': 'Allowed countries', 'data-testid': 'allowed-countries' },
    countries.map((region) => {
      const name = countryName(region);
      return h('li', { class: 'country', 'data-region': region }, h('code', {}, region), name ? h('span', { class: 'subject-note' }, name) : null);
    }));
}

/** The allowed countries and the form that allows one; the form is never redrawn by a refresh. */
function allowCountrySection(countriesHolder, refresh) {
  const inputId = uniqueId('allow-country');
  const hintId = uniqueId('allow-country-hint');
  const errorId = uniqueId('allow-country-error');
  const input = h('input', {
    id: inputId,
    type: 'text',
    name: 'country',
    class: 'country-input',
    autocomplete: 'off',
    autocapitalize: 'characters',
    spellcheck: 'false',
    maxlength: '8',
    placeholder: 'US',
    'aria-describedby': `${hintId} ${errorId}`,
  });
  const error = h('p', { id: errorId, class: 'field-error', 'aria-live': 'polite', hidden: true });
  const submit = h('button', { type: 'submit', class: 'button button-primary' }, 'Allow country');
  let sending = false;

  function showError(message) {
    error.hidden = !message;
    error.textContent = message || '';
    if (message) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }
  input.addEventListener('input', () => {
    if (!error.hidden) showError(null);
  });

  const form = h('form', { class: 'allow-country-form', novalidate: true, 'data-testid': 'allow-country-form' },
    h('div', { class: 'field' },
      h('label', { class: 'field-label', for: inputId }, 'Allow a country'),
      h('div', { class: 'input-with-button' }, input, submit),
      h('p', { id: hintId, class: 'field-description' }, 'Its ISO 3166 code, two letters such as US or GB. The first-seen-country layer then lets sends there go, as if a code had been verified there.'),
      error));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (sending) return;
    // Letters typed in lower case are meant as the code; anything else is for the host to judge.
    const region = input.value.trim().toUpperCase();
    if (!region) {
      showError('Enter a country code: two letters, such as US.');
      input.focus();
      return;
    }
    showError(null);
    sending = true;
    // aria-disabled, not disabled: a disabled button would drop the keyboard focus.
    submit.setAttribute('aria-disabled', 'true');
    try {
      await api('POST', `/api/protection/countries/${encodeURIComponent(region)}/allow`);
      input.value = '';
      notify(`${region} is allowed: the first-seen-country layer no longer throttles it.`);
      await refresh();
    } catch (failure) {
      if (failure instanceof ApiError && failure.status === 400) {
        showError(asSentence(failure.message));
      } else if (failure instanceof ApiError && (failure.status === 404 || failure.status === 405)) {
        // Only a value that is not a path segment gets here (such as "..").
        showError('Use a country code of two letters, such as US.');
      } else {
        notify(`${region} could not be allowed: ${asSentence(failure.message)}`, 'error');
      }
      input.focus();
    } finally {
      sending = false;
      submit.removeAttribute('aria-disabled');
    }
  });

  return h('section', { class: 'card', 'aria-labelledby': 'countries-heading', 'data-testid': 'protection-countries' },
    h('h2', { id: 'countries-heading' }, 'Allowed countries'),
    h('p', { class: 'section-description' }, 'Countries an admin allowed: the first-seen-country layer spares them.'),
    countriesHolder,
    form);
}

function thresholdsView(settings) {
  if (!settings || typeof settings !== 'object') return h('p', { class: 'empty-state' }, 'The host reported no settings.');
  const shown = new Set(NOT_THRESHOLDS);
  const groups = LAYERS.map((layer) => {
    const items = layer.items.filter(([key]) => key in settings);
    for (const [key] of items) shown.add(key);
    if (items.length === 0) return null;
    // With `--protection off` no layer runs, whatever its thresholds.
    const on = settings.mode !== 'off' && layer.isOn(settings);
    return layerView(layer.title, layer.reason, layer.description, on, items.map(([key, label, kind]) => [key, label, formatSetting(settings[key], kind), settings[key]]));
  });
  // A setting this page does not know yet (a newer host) is still listed, by its flag.
  const others = Object.keys(settings).filter((key) => !shown.has(key));
  if (others.length > 0) {
    groups.push(layerView('Other', null, 'Further protection settings of this host.', null,
      others.map((key) => [key, key, formatSetting(settings[key]), settings[key]])));
  }
  return h('div', { class: 'layer-grid' }, groups);
}

function layerView(title, reason, description, on, rows) {
  return h('section', { class: 'layer', 'data-layer': reason || 'other', 'aria-label': title },
    h('h3', { class: 'layer-title' }, title, ' ', on === null ? null : badge(on ? 'On' : 'Off', on ? 'live' : 'neutral')),
    reason ? h('p', { class: 'layer-reason' }, 'Blocks as ', h('code', {}, reason)) : null,
    h('p', { class: 'layer-description' }, description),
    h('dl', { class: 'settings-list' },
      rows.map(([key, label, shownValue, rawValue]) => h('div', { class: 'setting', 'data-setting': key },
        h('dt', {}, label),
        h('dd', { class: 'setting-value' }, shownValue),
        h('dd', { class: 'setting-flag' }, h('code', {}, `${flagName(key)} ${typeof rawValue === 'object' ? JSON.stringify(rawValue) : rawValue}`))))));
}

function safeListView(entries) {
  if (!Array.isArray(entries) || entries.length === 0) {
    return h('p', { class: 'empty-state', 'data-testid': 'safe-list-empty' }, 'Empty: every number goes through the layers.');
  }
  return h('ul', { class: 'country-list', 'aria-label': 'Safe-list', 'data-testid': 'safe-list' },
    entries.map((entry) => h('li', { class: 'country' }, h('code', {}, entry))));
}
