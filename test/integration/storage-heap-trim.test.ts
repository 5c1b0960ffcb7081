/**
 * The heap's free pages given back (trimHeap, src/storage/page-release.ts).
 * Blocks freed between blocks still in use stay in glibc's heap (it gives
 * back only the top of the heap on its own); malloc_trim gives back the
 * whole pages inside them. The blocks here are Buffers' backing stores,
 * malloc'd from the main thread's arena ([heap], as a rule) like lmdb-js's write
 * buffers and the dirty pages of a flood's large write transactions.
 * Its own file: the measure is of this process's [heap].
 *
 * Reads /proc/self/smaps: Linux only.
 */
import t from 'tap';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { trimHeap } from '../../src/storage/page-release.js';
import { pageReleaseSkip as skip, residentByMapping } from '../support/resident.js';

const MiB = 2 ** 20;
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

t.test('free blocks between live ones: the heap keeps them until trimmed', { skip }, async (t) => {
  collectGarbage();
  trimHeap();
  const before = residentByMapping();
  // 40 MiB of 16 KiB blocks (under glibc's mmap threshold: they come from the main arena), every block written.
  const blocks: (Buffer | undefined)[] = [];
  for (let i = 0; i < 2_560; i++) blocks.push(Buffer.allocUnsafeSlow(16 * 1024).fill(i & 0xff));
  // Where the arena grew: [heap] as a rule; a mapping of its own when the heap could not be extended in place
  // (glibc then maps the arena's next part elsewhere). A CI run once found the blocks outside [heap]. Measured where they are.
  const after = residentByMapping();
  const grewIn = [...after].filter(([start, m]) => m.rss - (before.get(start)?.rss ?? 0) >= 4 * MiB).map(([start]) => start);
  const residentIn = (): number => {
    const now = residentByMapping();
    return grewIn.reduce((a, start) => a + (now.get(start)?.rss ?? 0), 0);
  };
  const start = grewIn.reduce((a, s) => a + (before.get(s)?.rss ?? 0), 0);
  const grown = residentIn();
  t.ok(grown - start > 30 * MiB, `the heap grew by ${((grown - start) / MiB).toFixed(1)} MiB (in ${grewIn.map((s) => after.get(s)?.name || 'an anonymous mapping').join(', ') || 'no mapping'})`);
  // Free three blocks in four; the fourth keeps the heap's top (and the spans between) in use.
  for (let i = 0; i < blocks.length; i++) if (i % 4 !== 3) blocks[i] = undefined;
  collectGarbage();
  await new Promise((r) => setTimeout(r, 50));
  collectGarbage();
  const freed = residentIn();
  t.ok(freed > start + (grown - start) * 0.6, `${(freed / MiB).toFixed(1)} MiB still resident once freed (glibc keeps it)`);
  t.equal(trimHeap(), true, 'malloc_trim gave pages back');
  const trimmed = residentIn();
  t.ok(trimmed < freed - (grown - start) * 0.4, `${(trimmed / MiB).toFixed(1)} MiB after the trim (from ${(freed / MiB).toFixed(1)})`);
  let intact = 0;
  for (let i = 3; i < blocks.length; i += 4) if (blocks[i]!.every((b) => b === (i & 0xff))) intact++;
  t.equal(intact, blocks.length / 4, 'the blocks in use are untouched');
});
