/** Admin tokens: the principal type and, for the CLI's bootstrap path, the token store (wired in src/app). */
export type { AdminTokenRecord, Principal } from "../domain/admin-store.js";
export { ADMIN_TOKEN_PREFIX, hashAdminToken } from "../app/admin-tokens.js";
export { createAdminTokenStore, type AdminTokenStore } from "../app/stores.js";
