import type { AdminOperations } from "../app/admin-operations.js";
import type { Logger } from "../logging.js";
import type { WriteLimiter } from "../app/write-limit.js";
import type { Authenticate } from "./access.js";

/** What the admin services need: the use cases and how to authenticate a call; passed in, never reached for. */
export interface AdminDeps {
  ops: AdminOperations;
  authenticate: Authenticate;
  /** Where faults are logged with their request id. */
  logger?: Logger;
  /** Every request takes one from its token's bucket once the token is verified, before its body is read (account tokens only). */
  requests?: WriteLimiter;
}
