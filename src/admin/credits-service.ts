import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  type CreditService,
  LedgerEntrySchema,
  ListLedgerEntriesResponseSchema,
  TopUpResponseSchema,
} from "../gen/tollgate/admin/v1/credits_pb.js";
import { caller } from "./access.js";
import type { AdminDeps } from "./admin-deps.js";

/** CreditService: protobuf ↔ the credit use cases (balance, idempotent operator top-ups, the ledger). */
export function creditService(deps: AdminDeps): ServiceImpl<typeof CreditService> {
  const ops = deps.ops.credits;
  return {
    async getBalance(req, ctx) {
      const { balance, free } = await ops.balanceWithFree(await caller(deps.authenticate, ctx), req.accountId);
      return { accountId: req.accountId, balanceNanoUsd: balance, freeNanoUsd: free };
    },
    async topUp(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      const t = await ops.topUp(who, {
        accountId: req.accountId,
        amount: req.amountNanoUsd,
        idempotencyKey: req.idempotencyKey,
      });
      return create(TopUpResponseSchema, {
        topUpId: t.topUpId,
        accountId: t.accountId,
        creditNanoUsd: t.amount,
        platformFeeNanoUsd: t.fee,
        chargedNanoUsd: t.amount + t.fee,
        platformFeeBps: t.feeBps,
        balanceNanoUsd: t.balance,
        replayed: t.replayed,
      });
    },
    async listLedgerEntries(req, ctx) {
      const { items, nextPageToken } = await ops.ledger(await caller(deps.authenticate, ctx), req);
      return create(ListLedgerEntriesResponseSchema, {
        entries: items.map((e) =>
          create(LedgerEntrySchema, {
            id: e.id,
            kind: e.kind,
            amountNanoUsd: e.amount,
            reference: e.reference,
            estimated: e.estimated,
            createdAt: timestampFromMs(e.createdAt),
          }),
        ),
        nextPageToken,
      });
    },
  };
}
