/** Calls `log` at most once per `everyMs`, saying how many calls it swallowed, so an outage is one line per period. */
export function throttled(
  everyMs: number,
  log: (suppressed: number, detail: unknown) => void,
): (detail: unknown) => void {
  let last = -Infinity;
  let suppressed = 0;
  return (detail) => {
    const now = Date.now();
    if (now - last < everyMs) {
      suppressed++;
      return;
    }
    last = now;
    log(suppressed, detail);
    suppressed = 0;
  };
}
