import { renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { openStores } from "../../app/stores.js";
import { loadConfig, type Config } from "../../config/config.js";
import { envoyRenderInput, renderEnvoy } from "../../dataplane/envoy-config/profile.js";
import { group, parse, type Handler } from "../cli-kit.js";

/** The provider ids the database serves (opened, migrated and seeded the way `serve` opens it). */
async function servedProviders(config: Config): Promise<string[]> {
  const stores = await openStores(config);
  try {
    return [...(await stores.catalogue.snapshot()).providers.keys()];
  } finally {
    await stores.db.close();
  }
}

/**
 * `tollgate envoy render`: writes Envoy's bootstrap from the catalogue's providers and the config, with no server.
 * Providers and their upstreams come from the catalogue file; with --from-database only the providers the database
 * serves are rendered (a database provider the file gives no upstream is refused). The text passes a
 * structural self-check before anything is written, and --out is replaced atomically, so a failed render never
 * leaves a half-written or broken config where Envoy reads it.
 */
const render: Handler = async (args, out) => {
  const { values } = parse(args, {
    local: { type: "boolean" },
    out: { type: "string" },
    catalogue: { type: "string" },
    authz: { type: "string" },
    meter: { type: "string" },
    "mock-upstream": { type: "string" },
    "tls-dir": { type: "string" },
    "from-database": { type: "boolean" },
  });
  // --catalogue is also what a fresh database is seeded from, as catalogue.file is for `serve`.
  const config = loadConfig({
    file: values.config,
    overrides: values.catalogue === undefined ? {} : { "catalogue.file": values.catalogue },
  });
  const options = {
    profile: values.local ? ("local" as const) : ("production" as const),
    config,
    servedProviders: values["from-database"] ? await servedProviders(config) : undefined,
    warn: (message: string) => process.stderr.write(`${message}\n`),
    catalogueFile: values.catalogue,
    authzAddress: values.authz,
    meterAddress: values.meter,
    mockUpstream: values["mock-upstream"],
    tlsDir: values["tls-dir"],
  };
  const text = renderEnvoy(options);
  if (values.out === undefined) {
    process.stdout.write(text);
    return;
  }
  const target = values.out;
  const temporary = join(dirname(target), `.${basename(target)}.${process.pid}.tmp`);
  try {
    writeFileSync(temporary, text);
    renameSync(temporary, target);
  } finally {
    rmSync(temporary, { force: true });
  }
  const providers = envoyRenderInput(options).providers.map((p) => p.id);
  out.result(
    { file: target, profile: options.profile, providers },
    () => `wrote ${target} (${options.profile}; providers: ${providers.join(", ")})`,
  );
};

/** `tollgate envoy …`: the data plane's configuration. */
export const envoy: Handler = group("envoy", { render });
