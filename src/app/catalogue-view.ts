import type { Config } from "../config/config.js";
import type { CatalogueSnapshot } from "../domain/catalogue.js";
import type { ProviderRoute } from "../dataplane/authz/check-response.js";
import type { CatalogueStore } from "../domain/ports.js";

/** The catalogue and provider routes this process admits with: one snapshot, swapped whole on reload. */
export interface CatalogueView {
  snapshot(): CatalogueSnapshot;
  routes(): Map<string, ProviderRoute>;
  /** Reloads catalogue and plans now. */
  reload(): Promise<void>;
  /** Reloads when the stored catalogue's version changed since the last load; true when it did. */
  reloadIfChanged(): Promise<boolean>;
}

/** Loads the catalogue once and returns the view that polling and the admin API reload. */
export async function loadCatalogueView(
  catalogue: CatalogueStore,
  config: Config,
  mockProviders: boolean,
): Promise<CatalogueView> {
  let current: { snapshot: CatalogueSnapshot; routes: Map<string, ProviderRoute> };
  const reload = async () => {
    const snapshot = await catalogue.snapshot();
    current = { snapshot, routes: providerRoutes(snapshot, config, mockProviders) };
  };
  await reload();
  let version = await catalogue.version();
  return {
    snapshot: () => current.snapshot,
    routes: () => current.routes,
    reload,
    async reloadIfChanged() {
      const latest = await catalogue.version();
      if (latest === version) return false;
      version = latest;
      await reload();
      return true;
    },
  };
}

/** Provider routes: catalogue base paths joined with configured credentials; a provider without one is not routable. */
function providerRoutes(snapshot: CatalogueSnapshot, config: Config, mock: boolean): Map<string, ProviderRoute> {
  const routes = new Map<string, ProviderRoute>();
  for (const provider of snapshot.providers.values()) {
    const key = config.providers[provider.id]?.api_key ?? (mock ? `mock-${provider.id}` : undefined);
    if (key) routes.set(provider.id, { basePath: provider.basePath, authorization: `Bearer ${key}` });
  }
  return routes;
}
