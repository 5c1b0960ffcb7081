import { open } from 'lmdb';
const env = open({ path: process.argv[2], readOnly: true, maxDbs: 200 });
const root = env.openDB({ name: null, keyEncoding: 'binary', encoding: 'binary', readOnly: true });
let tot = 0;
for (const { key } of root.getRange()) {
  const name = key.toString();
  try {
    const st = env.openDB({ name, readOnly: true }).getStats();
    const pages = st.treeBranchPageCount + st.treeLeafPageCount + st.overflowPages; tot += pages;
    console.log(name.padEnd(30), String(st.entryCount).padStart(8), 'entries', (pages*4096/1048576).toFixed(1).padStart(7), 'MiB', (st.entryCount? (pages*4096/st.entryCount).toFixed(0):'-').padStart(6), 'B/entry');
  } catch (e) { console.log(name, 'err', e.message); }
}
console.log('total', (tot*4096/1048576).toFixed(1), 'MiB; file pages', env.getStats().lastPageNumber, 'free entries', env.getStats().free.entryCount);
