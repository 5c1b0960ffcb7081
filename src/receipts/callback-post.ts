/**
 * One POST of a JSON body to a tenant's callback URL, as completion
 * callbacks and MO forwarding make them: a bounded timeout, the body of the
 * answer read and dropped, any 2xx is success. Returns undefined on success,
 * else the reason (for the retry record); never throws.
 */
export async function postCallback(http: typeof fetch, url: string, body: unknown, timeoutMs: number): Promise<string | undefined> {
  try {
    const res = await http(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    await res.arrayBuffer().catch(() => undefined);
    return res.status >= 200 && res.status < 300 ? undefined : `callback answered HTTP ${res.status}`;
  } catch (e) {
    return `callback failed: ${e instanceof Error ? e.message : String(e)}`;
  }
}
