# Tollgate control plane image: one image, every role (`serve --role authz|meter|admin`).
# Build: docker build -t tollgate .      Run: see docker-compose.yaml for the production topology.
FROM node:20-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 compiles when no prebuilt binary matches.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY console ./console
COPY scripts/build-console.mjs ./scripts/build-console.mjs
RUN npm run build && npm prune --omit=dev
# The local edge and the mock provider are development tools (`npm start`): the image ships without them.
RUN rm -rf dist/edge dist/mock-provider

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY catalogue ./catalogue
COPY envoy/usage.lua ./envoy/usage.lua
RUN mkdir -p /app/data /var/log/tollgate && chown -R node:node /app/data /var/log/tollgate
USER node
# authz (Envoy ext_authz gRPC), meter (Envoy access-log gRPC), admin (Connect / gRPC / gRPC-Web, /healthz, /metrics)
EXPOSE 9001 9002 8080
# V8's memory reducer off and a 256 MB floor under its old-generation limit: under a stream of large bodies authz
# otherwise fell into back-to-back full garbage collections (README, Operations, "V8 flags for serve"); serve warns
# when started without them.
ENTRYPOINT ["node", "--no-memory-reducer", "--initial-old-space-size=256", "dist/cli/main.js"]
CMD ["serve", "--no-data-plane"]
