/** Bounded waiting for tests: polls a condition until it holds, failing by name after a time limit. */

/** Poll `check` every `everyMs` until it holds; throws naming `what` after `timeoutMs` (bounded in rounds too). */
export async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 100_000; i++) {
    if (await check()) return;
    if (Date.now() >= deadline) throw new Error(`${what}: not reached within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`${what}: not reached within 100,000 polls`);
}
