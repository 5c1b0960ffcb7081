/**
 * Resident memory of this process by mapping, read from /proc/self/smaps
 * (Linux only), and the skip reason of the tests that read it and give pages
 * back (src/storage/page-release.ts).
 */
import { readFileSync } from 'node:fs';
import { pageReleaseUnavailable } from '../../src/storage/page-release.js';

/** Resident bytes of the mappings named `name` (a file's path, or "[heap]"). */
export function residentOf(name: string): number {
  let bytes = 0;
  for (const m of residentByMapping().values()) if (m.name === name) bytes += m.rss;
  return bytes;
}

/** Resident bytes of every mapping of this process, by its start address. */
export function residentByMapping(): Map<string, { name: string; rss: number }> {
  const out = new Map<string, { name: string; rss: number }>();
  let current: { name: string; rss: number } | undefined;
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const head = /^([0-9a-f]+)-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head !== null) {
      current = { name: head[2] ?? '', rss: 0 };
      out.set(head[1] as string, current);
    } else if (current !== undefined && line.startsWith('Rss:')) current.rss += Number(line.split(/\s+/)[1]) * 1024;
  }
  return out;
}

/** Why these tests cannot run here (not Linux: no /proc/self/smaps; no koffi: no madvise), or false. */
export const pageReleaseSkip: string | false = process.platform !== 'linux' ? 'reads /proc/self/smaps' : pageReleaseUnavailable() ?? false;
