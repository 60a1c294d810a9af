// Keeps a screen current with the plugins folder: while the picker or the Plugins page is
// open, `GET /api/plugins` (the factory registry's own report, held in memory: cheap) is
// polled every second and the screen redrawn when it changed. A dropped plugin shows up
// without a reload, as the empty state promises.

import { api } from './api.js';
import { watchForChanges } from './page-refresh.js';

/**
 * Calls `onChange(files)` whenever the plugin files' report differs from the last one seen.
 * `isActive()` false (the screen was left) or the returned function stops the poll.
 */
export function watchPluginFiles(onChange, { isActive = () => true } = {}) {
  return watchForChanges(() => api('GET', '/api/plugins'), onChange, { isActive });
}
