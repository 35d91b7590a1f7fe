/** Options for a group-commit batcher. */
export interface BatcherOptions<T> {
  /** Commit as soon as items of this total size are queued. */
  maxBatch: number;
  /** Otherwise commit this long after the first queued item. */
  windowMs: number;
  /** Commits (and other tasks run through `tryRun`) in flight at once. */
  concurrency: number;
  /** An item's weight against maxBatch (0 is allowed: such items ride along). */
  sizeOf(item: T): number;
  /** Writes one batch; answers its items itself (the batcher only counts the slot). */
  commit(items: T[]): Promise<void>;
}

/** Group commit: many callers, few transactions; a batch closes on size or on its time window. */
export interface Batcher<T> {
  /** Queues an item; it is committed in the next batch (at once when the queue reaches maxBatch). */
  add(item: T): void;
  /** Starts a commit of what is queued now, if a slot is free (else the next free slot takes it). */
  flush(): void;
  /** Runs another task in a commit slot (spool replay shares the slots) when one is free; false when none is. */
  tryRun(task: () => Promise<void>): boolean;
  /** Commits what is queued and resolves once nothing is queued or in flight. */
  drain(): Promise<void>;
}

/** Creates a batcher (see Batcher). */
export function createBatcher<T>(options: BatcherOptions<T>): Batcher<T> {
  const { maxBatch, windowMs, concurrency, sizeOf } = options;
  const queue: T[] = [];
  let queued = 0;
  let timer: NodeJS.Timeout | undefined;
  let inFlight = 0;
  const idle: Array<() => void> = [];

  function schedule(): void {
    if (queued === 0 || inFlight >= concurrency) return;
    if (queued >= maxBatch) {
      flush();
    } else if (!timer) {
      timer = setTimeout(() => {
        timer = undefined;
        flush();
      }, windowMs);
    }
  }

  /** A slot was freed: the queue may commit now, and drain() callers may be answered. */
  function released(): void {
    if (queued > 0) {
      if (queued >= maxBatch) flush();
      else schedule();
    }
    if (inFlight === 0 && queued === 0) for (const done of idle.splice(0)) done();
  }

  function run(task: () => Promise<void>): void {
    inFlight++;
    void task().finally(() => {
      inFlight--;
      released();
    });
  }

  function flush(): void {
    if (timer) {
      clearTimeout(timer);
      timer = undefined;
    }
    if (queue.length === 0 || inFlight >= concurrency) return;
    const items: T[] = [];
    let size = 0;
    while (queue.length > 0 && size < maxBatch) {
      const item = queue.shift()!;
      items.push(item);
      size += sizeOf(item);
    }
    queued -= size;
    run(() => options.commit(items));
  }

  return {
    add(item) {
      queue.push(item);
      queued += sizeOf(item);
      schedule();
    },
    flush,
    tryRun(task) {
      if (inFlight >= concurrency) return false;
      run(task);
      return true;
    },
    drain() {
      flush();
      if (inFlight === 0 && queued === 0) return Promise.resolve();
      return new Promise<void>((resolve) => idle.push(resolve));
    },
  };
}
