// Keeps a screen current with the plugins folder: while the picker or the Plugins page is
// open, `GET /api/plugins` (the factory registry's own report, held in memory: cheap) is
// polled every second and the screen redrawn when it changed. A dropped plugin shows up
// without a reload, as the empty state promises.

import { api } from './api.js';

const POLL_INTERVAL_MS = 1000;

/**
 * Calls `onChange(files)` whenever the plugin files' report differs from the last one seen.
 * `isActive()` false (the screen was left) or the returned function stops the poll.
 */
export function watchPluginFiles(onChange, { isActive = () => true } = {}) {
  let stopped = false;
  let timer = null;
  let last = null;
  const running = () => !stopped && isActive();
  async function poll() {
    if (!running()) return;
    // A hidden tab asks nothing; it catches up when shown again.
    if (!document.hidden) {
      try {
        const files = await api('GET', '/api/plugins');
        const text = JSON.stringify(files);
        if (last !== null && text !== last && running()) onChange(files);
        last = text;
      } catch {
        // The host is restarting or unreachable: try again at the next tick.
      }
    }
    if (running()) timer = setTimeout(poll, POLL_INTERVAL_MS);
  }
  poll();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
