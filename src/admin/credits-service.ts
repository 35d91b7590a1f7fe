import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { big, bool, int } from "../adapters/sql/database.js";
import { nanos } from "../domain/money.js";
import { CreditService, LedgerEntrySchema, ListLedgerEntriesResponseSchema, TopUpResponseSchema } from "../gen/tollgate/admin/v1/credits_pb.js";
import { caller, requireAccount } from "./access.js";
import { audit, type AdminDeps } from "./admin-deps.js";
import { decodePageToken, pageOf, pageSize } from "./page-token.js";
import { id, invalid, positive, text } from "./validate.js";
import { notFound, storeCall } from "./views.js";

const M = "tollgate.admin.v1.CreditService/";
/** One top-up is at most USD 1,000,000 (in nano-USD). */
const MAX_TOP_UP = 1_000_000n * 1_000_000_000n;

/** CreditService: balance, idempotent top-ups with their fee breakdown, and the ledger. */
export function creditService(deps: AdminDeps): ServiceImpl<typeof CreditService> {
  const { knex } = deps.stores.db;
  const existing = async (accountId: string) => {
    if (!(await knex("accounts").where({ id: accountId }).first("id"))) throw notFound(`account "${accountId}"`);
  };
  return {
    async getBalance(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      const accountId = id(req.accountId, "account_id");
      requireAccount(who, accountId);
      await existing(accountId);
      const { balance } = await deps.stores.ledger.balance(accountId);
      return { accountId, balanceNanoUsd: balance };
    },
    async topUp(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      const accountId = id(req.accountId, "account_id");
      requireAccount(who, accountId);
      const amount = nanos(BigInt(positive(req.amountNanoUsd, "amount_nano_usd", MAX_TOP_UP)));
      const key = text(req.idempotencyKey, "idempotency_key");
      await existing(accountId);
      const now = deps.clock();
      // Claim the idempotency key first: of two concurrent calls with one key, exactly one inserts and tops up.
      const claimed = await knex("admin_top_ups").insert({ account_id: accountId, idempotency_key: key, amount: amount.toString(), created_at: now }).onConflict(["account_id", "idempotency_key"]).ignore().returning("account_id");
      if (claimed.length === 0) {
        const prior = await knex("admin_top_ups").where({ account_id: accountId, idempotency_key: key }).first();
        if (!prior || prior.top_up_id === null) throw new ConnectError(`idempotency_key: a top-up with this key is still in progress; retry shortly`, Code.Aborted);
        if (big(prior.amount) !== amount) throw new ConnectError(`idempotency_key: already used for a top-up of ${big(prior.amount)} nano-USD`, Code.FailedPrecondition);
        const fee = big(prior.fee);
        return create(TopUpResponseSchema, {
          topUpId: prior.top_up_id as string, accountId, creditNanoUsd: amount, platformFeeNanoUsd: fee, chargedNanoUsd: amount + fee,
          platformFeeBps: int(prior.fee_bps), balanceNanoUsd: big(prior.balance), replayed: true,
        });
      }
      let result;
      try {
        result = await storeCall(() => deps.stores.ledger.topUp({ accountId, amount, feeBps: deps.platformFeeBps, now }));
      } catch (error) {
        await knex("admin_top_ups").where({ account_id: accountId, idempotency_key: key }).whereNull("top_up_id").delete();
        throw error;
      }
      await knex("admin_top_ups").where({ account_id: accountId, idempotency_key: key }).update({
        top_up_id: result.topUpId, fee: result.fee.toString(), fee_bps: deps.platformFeeBps, balance: result.change.balance.toString(),
      });
      await deps.balanceCommitted(result.change);
      await audit(deps, who, M + "TopUp", { account_id: accountId, top_up_id: result.topUpId });
      return create(TopUpResponseSchema, {
        topUpId: result.topUpId, accountId, creditNanoUsd: amount, platformFeeNanoUsd: result.fee, chargedNanoUsd: amount + result.fee,
        platformFeeBps: deps.platformFeeBps, balanceNanoUsd: result.change.balance, replayed: false,
      });
    },
    async listLedgerEntries(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      const accountId = id(req.accountId, "account_id");
      requireAccount(who, accountId);
      await existing(accountId);
      const size = pageSize(req.pageSize);
      const scope = `ledger:${accountId}`;
      const after = decodePageToken(req.pageToken, scope, ["string"]);
      if (after && !/^\d{1,19}$/.test(after[0] as string)) throw invalid("page_token", "is not a page token from this list");
      let q = knex("ledger_entries").where({ account_id: accountId }).orderBy("id", "desc").limit(size + 1);
      // Ids are bigints; the cursor carries them as decimal strings so they never pass through a float.
      if (after) q = q.andWhere("id", "<", after[0]! as string);
      const { page, nextPageToken } = pageOf(await q, size, scope, (last) => [String(last.id)]);
      return create(ListLedgerEntriesResponseSchema, {
        entries: page.map((r) => create(LedgerEntrySchema, {
          id: String(r.id), kind: r.kind as string, amountNanoUsd: big(r.amount), reference: r.decision_id as string,
          estimated: bool(r.estimated), createdAt: timestampFromMs(int(r.created_at)),
        })),
        nextPageToken,
      });
    },
  };
}
