import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/config.js";

describe("admin transport limits in the config", () => {
  it("default to 1 MiB bodies, 1024 connections (64 per IP), 60 s idle, 10 s for request headers, 30 s for a request body, 64 MiB buffered, 10 account writes a second (burst 50), 50 account requests a second (burst 200), console sessions of 1 h", () => {
    expect(loadConfig({ env: {} }).admin).toEqual({
      listen: "127.0.0.1:8080",
      max_body_bytes: 1_048_576,
      max_connections: 1024,
      idle_timeout_ms: 60_000,
      headers_timeout_ms: 10_000,
      request_timeout_ms: 30_000,
      max_buffered_bytes: 67_108_864,
      max_connections_per_ip: 64,
      account_writes_per_second: 10,
      account_write_burst: 50,
      account_requests_per_second: 50,
      account_request_burst: 200,
      console_session_ttl_ms: 3_600_000,
    });
  });

  it("are set from TOLLGATE_ADMIN_* variables", () => {
    const env = {
      TOLLGATE_ADMIN_MAX_BODY_BYTES: "65536",
      TOLLGATE_ADMIN_MAX_CONNECTIONS: "20",
      TOLLGATE_ADMIN_IDLE_TIMEOUT_MS: "2000",
      TOLLGATE_ADMIN_HEADERS_TIMEOUT_MS: "1000",
      TOLLGATE_ADMIN_REQUEST_TIMEOUT_MS: "5000",
      TOLLGATE_ADMIN_MAX_BUFFERED_BYTES: "1048576",
      TOLLGATE_ADMIN_MAX_CONNECTIONS_PER_IP: "8",
      TOLLGATE_ADMIN_ACCOUNT_WRITES_PER_SECOND: "2",
      TOLLGATE_ADMIN_ACCOUNT_WRITE_BURST: "3",
      TOLLGATE_ADMIN_ACCOUNT_REQUESTS_PER_SECOND: "4",
      TOLLGATE_ADMIN_ACCOUNT_REQUEST_BURST: "5",
    };
    expect(loadConfig({ env }).admin).toMatchObject({
      max_body_bytes: 65_536,
      max_connections: 20,
      idle_timeout_ms: 2000,
      headers_timeout_ms: 1000,
      request_timeout_ms: 5000,
      max_buffered_bytes: 1_048_576,
      max_connections_per_ip: 8,
      account_writes_per_second: 2,
      account_write_burst: 3,
      account_requests_per_second: 4,
      account_request_burst: 5,
    });
  });

  it("refuse a value out of range, naming the field and its source", () => {
    expect(() => loadConfig({ env: { TOLLGATE_ADMIN_MAX_BODY_BYTES: "0" } })).toThrow(
      /^config: admin\.max_body_bytes: .* \(from environment variable TOLLGATE_ADMIN_MAX_BODY_BYTES\)$/,
    );
    expect(() => loadConfig({ env: { TOLLGATE_ADMIN_MAX_CONNECTIONS: "0" } })).toThrow(
      /^config: admin\.max_connections: /,
    );
  });
});
