/** The arguments of a Dockerfile instruction in exec form (`ENTRYPOINT ["node", …]`, `CMD [...]`); throws otherwise. */
export function execForm(dockerfile: string, instruction: "ENTRYPOINT" | "CMD"): string[] {
  const line = new RegExp(`^${instruction} (\\[.*\\])$`, "m").exec(dockerfile);
  if (!line) throw new Error(`Dockerfile has no exec-form ${instruction}`);
  return JSON.parse(line[1]!) as string[];
}
