// Keeps a screen current without a reload: `load()` is asked again every interval while the
// screen is open and the tab visible, and `onChange(value)` called when the answer differs
// from the last one applied. Light on the host: one cheap GET a tick, none while hidden.

const DEFAULT_INTERVAL_MS = 1000;

/**
 * Polls `load()` and calls `onChange(value)` when its answer changed. `isActive()` false (the
 * screen was left) or the returned function stops the poll; while `isPaused()` (a dialog is
 * open over the screen) a change waits for the next tick. `initial`: what the screen shows
 * now, so a change made before the first tick is not taken as the starting point.
 */
export function watchForChanges(load, onChange, { initial, isActive = () => true, isPaused = () => false, intervalMs = DEFAULT_INTERVAL_MS } = {}) {
  let stopped = false;
  let timer = null;
  let last = initial === undefined ? null : JSON.stringify(initial);
  const running = () => !stopped && isActive();
  async function poll() {
    if (!running()) return;
    // A hidden tab asks nothing; it catches up when shown again.
    if (!document.hidden && !isPaused()) {
      try {
        const value = await load();
        const text = JSON.stringify(value);
        if (last !== null && text !== last && running() && !isPaused()) {
          onChange(value);
          last = text;
        } else if (last === null) {
          last = text;
        }
      } catch {
        // The host is restarting or unreachable: try again at the next tick.
      }
    }
    if (running()) timer = setTimeout(poll, intervalMs);
  }
  if (last === null) poll();
  else timer = setTimeout(poll, intervalMs);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
