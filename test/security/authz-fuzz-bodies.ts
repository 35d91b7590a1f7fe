// The fuzz suite's bodies (test/security/authz-fuzz.isolated.test.ts), built from a small recipe where they are
// decided (authz-fuzz-decider.ts, a worker thread): building one allocates up to tens of MB (a shape is built at its
// asked count, then halved until it fits), and garbage left in the test runner's isolate would be collected by
// helper threads while a decision is measured.
import { BODY_LIMIT, CHAT_CLOSE, CHAT_OPEN } from "./authz-support.js";

/** The shapes: each builds a body from its recipe and a count `k`. */
const SHAPES = {
  /** One message whose content repeats `unit`. */
  run: (r, k) => `${CHAT_OPEN}${r.unit.repeat(k)}${CHAT_CLOSE}`,
  /** A value nested `k` deep (arrays, or objects when `open` is one). */
  deep: (r, k) =>
    `{"model":"gpt-5.5","messages":[{"role":"user","content":"x","tool_calls":${r.open === "[" ? "[".repeat(k) + "]".repeat(k) : r.open.repeat(k) + "1" + "}".repeat(k)}}]}`,
  /** `k` messages, each `unit`. */
  messages: (r, k) =>
    `{"model":"gpt-5.5","messages":[${Array.from({ length: k }, () => `{"role":"user","content":"${r.unit}"}`).join(",")}]}`,
  /** One message of `k` text parts, each `unit`. */
  parts: (r, k) =>
    `{"model":"gpt-5.5","messages":[{"role":"user","content":[${Array.from({ length: k }, () => `{"type":"text","text":"${r.unit}"}`).join(",")}]}]}`,
  /** `k` huge numbers. */
  numbers: (_r, k) =>
    `{"model":"gpt-5.5","messages":[{"role":"user","content":"x"}],"tools":[${"1.5e300,".repeat(k)}0]}`,
  /** `k` nests `size` deep side by side. */
  nests: (r, k) =>
    `{"model":"gpt-5.5","messages":[{"role":"user","content":"x","x":[${Array.from({ length: k }, () => "[".repeat(r.size) + "]".repeat(r.size)).join(",")}]}]}`,
  /** `k` empty objects. */
  empties: (_r, k) => `{"model":"gpt-5.5","messages":[{"role":"user","content":"x","x":[${"{},".repeat(k)}{}]}]}`,
  /** One object of `k` distinct member names, `size` characters each. */
  keys: (r, k) =>
    `{"model":"gpt-5.5","messages":[{"role":"user","content":"x","x":{${Array.from({ length: k }, (_, i) => `"${String(i).padStart(r.size, "k")}":0`).join(",")}}}]}`,
  /** A system message, a user name and content, each `unit` repeated `k` times. */
  names: (r, k) =>
    `{"model":"gpt-5.5","messages":[{"role":"system","content":"${r.unit.repeat(k)}"},{"role":"user","name":"${r.unit.repeat(k)}","content":"${r.unit.repeat(k)}"}]}`,
} satisfies Record<string, (r: BodyRecipe, k: number) => string>;

export type Shape = keyof typeof SHAPES;
export const SHAPE_NAMES = Object.keys(SHAPES) as Shape[];

/** One fuzzed body: its shape, the JSON-escaped text it repeats, how many (before fitting), a size and an opener. */
export interface BodyRecipe {
  shape: Shape;
  unit: string;
  count: number;
  size: number;
  open: string;
}

/** The body a recipe makes: its shape at the largest count (halving from the one asked) that fits the body limit. */
export function buildBody(recipe: BodyRecipe): string {
  const build = SHAPES[recipe.shape];
  for (let n = recipe.count; ; n = Math.floor(n / 2)) {
    const body = build(recipe, Math.max(1, n));
    if (Buffer.byteLength(body) < BODY_LIMIT || n <= 1) return body;
  }
}
