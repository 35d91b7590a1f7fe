/**
 * An ordered list of what a start opened: each part registers how to close itself right after it starts, and
 * closing runs the list last-in first-out, so nothing closes before a part that still depends on it.
 */
export interface Closers {
  /** Registers how to close the part that has just started. */
  add(name: string, close: () => unknown): void;
  /**
   * Closes every registered part, last started first, each at most once; a closer that fails does not stop the
   * ones after it. Rejects with the first failure (named) once all have run.
   */
  closeAll(): Promise<void>;
}

/** Creates an empty closer list (the composition root's; tests of start-up failure build their own). */
export function createClosers(): Closers {
  const list: Array<{ name: string; close: () => unknown }> = [];
  return {
    add(name, close) {
      list.push({ name, close });
    },
    async closeAll() {
      let first: Error | undefined;
      for (let part = list.pop(); part; part = list.pop()) {
        try {
          await part.close();
        } catch (error) {
          first ??= new Error(
            `closing ${part.name} failed: ${error instanceof Error ? error.message : String(error)}`,
            { cause: error },
          );
        }
      }
      if (first) throw first;
    },
  };
}
