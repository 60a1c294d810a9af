// "Plugins": every plugin file the host has seen (GET /api/plugins) and what became of it, and
// Rescan (POST /api/plugins/rescan) for folders whose change notifications do not arrive.

import { api } from './api.js';
import { badge, formatTime, h, loading, notify, replaceChildren } from './dom.js';
import { watchPluginFiles } from './plugin-changes.js';

const STATUS_KINDS = { loaded: 'live', rejected: 'error', incomplete: 'warning', pending: 'warning', superseded: 'neutral', removed: 'neutral' };

function fileName(path) {
  return String(path).split('/').pop();
}

function folderOf(files) {
  const path = files.find((file) => typeof file.path === 'string' && file.path.includes('/'))?.path;
  return path ? path.slice(0, path.lastIndexOf('/')) || '/' : null;
}

function signer(file) {
  if (!file.signerKeyId) return '—';
  return h('span', { title: file.trustedComment || '' }, h('code', {}, file.signerKeyId));
}

// A serving build's worker processes (--plugin-isolation process): how many run, how often
// one was replaced, and the last crash (its reason is set as text: the worker's last words
// come from the plugin).
function workers(file) {
  const pool = file.workers;
  if (!pool) return '—';
  const restarts = pool.restarts === 1 ? '1 restart' : `${pool.restarts} restarts`;
  const summary = h('span', { class: 'nowrap', 'data-testid': 'plugin-workers' }, `${pool.running}/${pool.workers} running · ${restarts}`);
  if (!pool.lastCrash) return summary;
  return h('div', {}, summary,
    h('div', { class: 'plugin-error', 'data-testid': 'plugin-last-crash' },
      `Last crash ${formatTime(pool.lastCrash.at)}: ${pool.lastCrash.reason}`));
}

// Where serving builds run, in words.
function isolationLine(files) {
  const modes = new Set(files.map((file) => file.isolation).filter(Boolean));
  if (modes.size === 0) return null;
  const flag = (mode) => h('code', { class: 'nowrap' }, `--plugin-isolation ${mode}`);
  const text = modes.has('process')
    ? ['Plugins run in sandboxed worker processes (', flag('process'), '): a plugin that crashes, loops or reaches for files or the network loses only its worker, which is replaced.']
    : ['Plugins run inside the host process (', flag('in-process'), ', the default): the fastest path; a plugin that crashes takes the host with it.'];
  return h('p', { class: 'section-description', 'data-testid': 'plugin-isolation' }, text);
}

// Columns appear when some file has something to show in them (an empty Error column took
// width for nothing). On a phone each row becomes a card with the column names as labels.
function pluginTable(files) {
  if (files.length === 0) {
    return h('p', { class: 'empty-state' }, 'No plugin files yet. Copy a connector plugin (.so) into the plugins folder under a temporary name, then rename it into place; it shows up here within a second.');
  }
  const columns = [
    ['File', (file) => h('code', { title: file.path }, fileName(file.path))],
    ['Status', (file) => badge(file.status, STATUS_KINDS[file.status] || 'neutral')],
    ['Factory', (file) => (file.factoryId ? h('code', {}, file.factoryId) : '—')],
    ['Version', (file) => file.pluginVersion || '—'],
    files.some((file) => file.signerKeyId) ? ['Signed by', signer] : null,
    ['SHA-256', (file) => (file.sha256 ? h('code', { title: file.sha256 }, file.sha256.slice(0, 12)) : '—')],
    ['Loaded at', (file) => (file.loadedAt ? h('span', { class: 'nowrap' }, formatTime(file.loadedAt)) : '—')],
    files.some((file) => file.workers) ? ['Workers', workers] : null,
    files.some((file) => file.error) ? ['Error', (file) => file.error || ''] : null,
  ].filter(Boolean);
  return h('div', { class: 'table-scroll' },
    h('table', { class: 'plugins-table', 'data-testid': 'plugins-table' },
      h('caption', { class: 'visually-hidden' }, 'Plugin files'),
      h('thead', {}, h('tr', {}, columns.map(([title]) => h('th', { scope: 'col' }, title)))),
      h('tbody', {}, files.map((file) => h('tr', { 'data-status': file.status, 'data-file': fileName(file.path) },
        columns.map(([title, cell]) => h('td', { 'data-label': title, class: title === 'Error' ? 'plugin-error' : null }, cell(file))))))));
}

export async function renderPluginsPage(container, _params, context) {
  document.title = 'Plugins · connector-host console';
  replaceChildren(container, h('h1', {}, 'Plugins'), loading());
  const files = await api('GET', '/api/plugins');
  if (!context.isCurrent()) return;
  const tableHolder = h('div', {}, pluginTable(files));
  const isolationHolder = h('div', {}, isolationLine(files));
  const folder = folderOf(files);
  const folderLine = h('p', { class: 'plugins-folder' }, 'Plugins folder: ',
    folder ? h('code', { 'data-testid': 'plugins-folder' }, folder) : 'the folder given with --plugins-dir');
  const rescan = h('button', { type: 'button', class: 'button' }, 'Rescan');
  rescan.addEventListener('click', async () => {
    rescan.disabled = true;
    rescan.setAttribute('aria-busy', 'true');
    try {
      const rescanned = await api('POST', '/api/plugins/rescan');
      replaceChildren(tableHolder, pluginTable(rescanned));
      replaceChildren(isolationHolder, isolationLine(rescanned));
      const loaded = rescanned.filter((file) => file.status === 'loaded').length;
      notify(`Rescanned: ${loaded} loaded, ${rescanned.length - loaded} other.`);
    } catch (error) {
      notify(`Rescan failed: ${error.message}`, 'error');
    } finally {
      rescan.disabled = false;
      rescan.removeAttribute('aria-busy');
    }
  });
  // Files dropped into (or removed from) the folder show without Rescan or a reload.
  watchPluginFiles((changed) => {
    replaceChildren(tableHolder, pluginTable(changed));
    replaceChildren(isolationHolder, isolationLine(changed));
  }, { isActive: context.isCurrent });
  replaceChildren(container,
    h('div', { class: 'page-heading' }, h('h1', {}, 'Plugins'), rescan),
    h('section', { class: 'card' },
      h('p', { class: 'section-description' }, 'Files in the plugins folder, loaded without a restart. A refused file keeps its one-line reason here, and the earlier build that keeps serving its factory is listed under the same file as loaded. A file waiting a moment for its signature (or a signature for its file) is pending. Earlier builds are listed as superseded (the last 3 per factory) or removed. This page follows the folder as it changes.'),
      folderLine,
      isolationHolder,
      tableHolder));
}
