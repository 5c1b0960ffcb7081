/** A response's body as JSON when it parses, else as text (error pages, CSV, plain answers). */
export async function responseBody(res: Response): Promise<unknown> {
  const text = await res.text();
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}
