/** A change to a key (revoke, rotate, limits) or an account that every replica's key cache must drop at once. */
export interface KeyChange {
  keyId?: string;
  accountId?: string;
}

/**
 * Tells every replica that a key changed, so revocation reaches them in milliseconds instead of a poll interval.
 * Best effort by design: the SQL write is the truth and the key-cache poll still catches anything a message missed,
 * so publishing never throws into the mutation that already committed.
 */
export interface KeyEvents {
  publish(change: KeyChange): Promise<void>;
}
