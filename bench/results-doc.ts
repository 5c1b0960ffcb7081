/**
 * Regenerates one benchmark's section of bench/RESULTS.md from its JSON
 * summary, so the document is never edited by hand:
 *
 *   node --import tsx bench/results-doc.ts peer [bench/out/peer-….json]
 *
 * Without a file it takes the newest bench/out/<name>-*.json. The section is
 * the text between `<!-- <name>:start -->` and `<!-- <name>:end -->`
 * (appended at the end when the markers are missing). The summary must carry
 * `doc: { title, command, about: string[], tables: string[] }` and `at`.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

interface Doc {
  readonly title: string;
  readonly command: string;
  readonly about: readonly string[];
  readonly tables: readonly string[];
}

const name = process.argv[2];
if (name === undefined || !/^[a-z0-9-]+$/.test(name)) {
  process.stderr.write('usage: results-doc.ts <bench name> [summary.json]\n');
  process.exit(2);
}
const outDir = join(import.meta.dirname, 'out');
const file =
  process.argv[3] ??
  join(
    outDir,
    readdirSync(outDir)
      // `<name>-<timestamp>.json` only: `peer` must not pick `peer-memory-….json`.
      .filter((f) => f.startsWith(`${name}-`) && /^\d/.test(f.slice(name.length + 1)) && f.endsWith('.json'))
      .sort()
      .at(-1) ?? '',
  );
const summary = JSON.parse(readFileSync(file, 'utf8')) as { at?: string; node?: string; doc?: Doc; ab?: boolean };
// An A/B of two builds (bench:peer BENCH_AB=1) has no Kannel in it: it goes only under its own name.
if (summary.ab === true && name !== 'peer-ab') {
  process.stderr.write(`${file} is an A/B of two builds (BENCH_AB=1), not a ${name} run: use \`results-doc.ts peer-ab\`\n`);
  process.exit(1);
}
const doc = summary.doc;
if (doc === undefined) {
  process.stderr.write(`${file} has no doc section: run the benchmark again with the current code\n`);
  process.exit(1);
}
const section = [
  `<!-- ${name}:start -->`,
  `## ${doc.title}`,
  '',
  `Command: \`${doc.command}\` (run ${summary.at ?? '?'}, Node ${summary.node ?? '?'}; regenerated from \`bench/out/${file.split('/').at(-1) ?? ''}\` by \`node --import tsx bench/results-doc.ts ${name}\`).`,
  '',
  ...doc.about.map((line) => `- ${line}`),
  '',
  ...doc.tables.flatMap((t) => [t.replace(/^### /, '#### '), '']),
  `<!-- ${name}:end -->`,
].join('\n');
const resultsFile = join(import.meta.dirname, 'RESULTS.md');
const results = readFileSync(resultsFile, 'utf8');
const start = results.indexOf(`<!-- ${name}:start -->`);
const endMarker = `<!-- ${name}:end -->`;
const end = results.indexOf(endMarker);
const next = start >= 0 && end > start ? `${results.slice(0, start)}${section}${results.slice(end + endMarker.length)}` : `${results.trimEnd()}\n\n${section}\n`;
writeFileSync(resultsFile, next);
process.stdout.write(`bench/RESULTS.md: ${name} section regenerated from ${file}\n`);
