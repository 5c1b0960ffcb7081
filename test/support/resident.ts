/**
 * Resident memory of this process by mapping, read from /proc/self/smaps
 * (Linux only), and the skip reason of the tests that read it and give pages
 * back (src/storage/page-release.ts).
 */
import { readFileSync } from 'node:fs';
import { pageReleaseUnavailable } from '../../src/storage/page-release.js';

/** Resident bytes of the mappings whose line ends with `name` (a file's path, or "[heap]"). */
export function residentOf(name: string): number {
  let inside = false;
  let kib = 0;
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inside = line.endsWith(` ${name}`);
    else if (inside && line.startsWith('Rss:')) kib += Number(line.split(/\s+/)[1]);
  }
  return kib * 1024;
}

/** Why these tests cannot run here (not Linux: no /proc/self/smaps; no koffi: no madvise), or false. */
export const pageReleaseSkip: string | false = process.platform !== 'linux' ? 'reads /proc/self/smaps' : pageReleaseUnavailable() ?? false;
