/**
 * Reading a file's mappings out of /proc/self/maps text (rangesOf): the
 * ranges of that file only, with their offsets, whatever else the process
 * maps (other files, the same path as a prefix, deleted files, anonymous
 * memory, malformed lines).
 */
import t from 'tap';
import { rangesOf } from '../../src/storage/page-release.js';

const FILE = '/var/lib/smsgw/data/gateway.lmdb';
const maps = [
  '55d0c0a00000-55d0c0c00000 r--p 00000000 fd:01 1234 /usr/bin/node',
  '7f1a00000000-7f2a00000000 r--s 00000000 fd:01 5678 /var/lib/smsgw/data/gateway.lmdb',
  '7f2a00000000-7f2a00010000 rw-s 00000000 fd:01 5679 /var/lib/smsgw/data/gateway.lmdb-lock',
  '7f2b00000000-7f2b00100000 r--s 00200000 fd:01 5678 /var/lib/smsgw/data/gateway.lmdb',
  '7f2c00000000-7f2c00001000 rw-p 00000000 00:00 0 ',
  '7f2d00000000-7f2d00001000 r--s 00000000 fd:01 9999 /old/gateway.lmdb (deleted)',
  'garbage line /var/lib/smsgw/data/gateway.lmdb',
  'zz-yy r--s 00000000 fd:01 5678 /var/lib/smsgw/data/gateway.lmdb',
  '',
].join('\n');

t.same(rangesOf(maps, FILE), [
  { start: 0x7f1a00000000, end: 0x7f2a00000000, offset: 0 },
  { start: 0x7f2b00000000, end: 0x7f2b00100000, offset: 0x200000 },
], 'the two mappings of the data file, with their offsets; not the lock file, not malformed lines');
t.same(rangesOf(maps, '/old/gateway.lmdb'), [], 'a deleted file is not named as itself');
t.same(rangesOf('', FILE), [], 'no maps, no ranges');
t.same(rangesOf(`1000-0fff r--s 00000000 fd:01 1 ${FILE}`, FILE), [], 'an empty or inverted range is left out');
