/**
 * Bulk import and export of people and groups as CSV.
 *
 * An import is all or nothing: the file is decoded, parsed (RFC 4180, see
 * core/csv.ts) and every row checked first — each problem reported with its
 * line and column — and only a file without problems is applied, in ONE
 * LMDB transaction (DirectoryStore.importPeople / importGroups), which
 * checks again what depends on the directory (units exist, a number is not
 * another person's) and rolls everything back on any refusal.
 *
 * Encodings: UTF-8 (with or without BOM) by default. Chinese Excel saves
 * "CSV" as GBK, which is not valid UTF-8: such a file is refused with a
 * report naming the first bad byte's line and saying it looks like GBK —
 * never imported as mojibake. `encoding=gbk` (or gb18030) decodes it as
 * GB 18030, a superset of GBK, with Node's own ICU decoder (no extra
 * dependency).
 *
 * People file, header required, columns in any order:
 *   id (optional), name, mobile, unit, roles (separated by ; or |), channel (sms | pda | both, default sms),
 *   email (optional; an empty cell clears it), mailAlerts (optional: true/false, yes/no, 1/0, 是/否; empty = false).
 *   A file without the email or mailAlerts column leaves those of people already in the directory as they are.
 * Groups file: one row per member, plus optionally a row with no member to define an empty group:
 *   group, name, unit, kind (person | group | role), member
 *     person: a person id or mobile number;  group: a group id (nested);
 *     role:   a role name, or role@unit for people with that role in unit's subtree
 * A groups import replaces the definition (members, nested groups, role rules) of every group it names.
 */
import { createHash } from 'node:crypto';
import { GatewayError, type FieldProblem } from '../core/errors.js';
import { formatCsv, parseCsv, unguardCell } from '../core/csv.js';
import type { Actor, ChannelPreference, RoleRule } from './types.js';
import { CHANNEL_PREFERENCES } from './types.js';
import { normalizeEmail, type DirectoryStore, type GroupInput, type PersonInput } from './store.js';
import { normalizeNumber } from '../core/phone.js';

/** Most problems listed in one report. */
export const MAX_REPORTED = 100;
/** Most data rows in one import file. */
export const MAX_IMPORT_ROWS = 1_000_000;

const PEOPLE_COLUMNS = ['id', 'name', 'mobile', 'unit', 'roles', 'channel', 'email', 'mailAlerts'] as const;
const PEOPLE_REQUIRED = ['name', 'mobile', 'unit'] as const;
const GROUP_COLUMNS = ['group', 'name', 'unit', 'kind', 'member'] as const;
const GROUP_REQUIRED = ['group'] as const;

export type CsvEncoding = 'utf-8' | 'gbk' | 'gb18030';

export function parseEncoding(raw: string | null | undefined): CsvEncoding {
  const e = (raw ?? 'utf-8').trim().toLowerCase();
  if (e === 'utf-8' || e === 'utf8' || e === '') return 'utf-8';
  if (e === 'gbk' || e === 'gb2312' || e === 'cp936') return 'gbk';
  if (e === 'gb18030') return 'gb18030';
  throw new GatewayError('VALIDATION', `unsupported encoding ${raw}`, { details: [{ field: 'encoding', message: 'utf-8, gbk or gb18030' }] });
}

const invalidImport = (problems: readonly FieldProblem[], total = problems.length): GatewayError =>
  new GatewayError('IMPORT_INVALID', `${total} problem(s) in the file; nothing was imported`, { details: problems.slice(0, MAX_REPORTED) });

/** Bytes → text. Refuses a file that is not valid in the declared encoding, saying where and why. */
export function decodeCsv(bytes: Uint8Array, encoding: CsvEncoding): string {
  if (encoding !== 'utf-8') {
    try {
      return new TextDecoder('gb18030', { fatal: true }).decode(bytes);
    } catch {
      throw invalidImport([{ field: '/file', message: `not valid ${encoding.toUpperCase()} text` }]);
    }
  }
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    const at = firstInvalidUtf8(bytes);
    const line = 1 + countNewlines(bytes, at);
    let gbk = false;
    try {
      new TextDecoder('gb18030', { fatal: true }).decode(bytes);
      gbk = true;
    } catch {
      gbk = false;
    }
    throw invalidImport([{
      field: `/rows/${line}`,
      message: `the file is not valid UTF-8 (byte ${at}, line ${line})${gbk ? '; it looks like GBK/GB 18030 (Excel\'s "CSV" for Chinese): save it as "CSV UTF-8", or send it with encoding=gbk' : ''}`,
    }]);
  }
}

export interface PeopleFile {
  readonly rows: { line: number; input: PersonInput }[];
  readonly sha256: string;
}

/** Parse and check a people file; IMPORT_INVALID listing every problem (by line and column). */
export function parsePeople(text: string, allowInternational: boolean): Omit<PeopleFile, 'sha256'> {
  const { records, header, problems } = readTable(text, PEOPLE_COLUMNS, PEOPLE_REQUIRED);
  const rows: { line: number; input: PersonInput }[] = [];
  const lineOfMobile = new Map<string, number>();
  const lineOfId = new Map<string, number>();
  const lineOfEmail = new Map<string, number>();
  const hasEmail = header.has('email');
  const hasMailAlerts = header.has('mailalerts');
  for (const { rec, at, cell } of tableRows(records, header, problems)) {
    const id = cell('id');
    const name = cell('name');
    const mobileRaw = cell('mobile');
    const unit = cell('unit');
    const channel = (cell('channel') || 'sms').toLowerCase();
    const roles = cell('roles').split(/[;|、]/).map((r) => r.trim()).filter((r) => r.length > 0);
    if (name === '') problems.push({ field: `${at}/name`, message: 'required' });
    if (unit === '') problems.push({ field: `${at}/unit`, message: 'required' });
    if (!(CHANNEL_PREFERENCES as readonly string[]).includes(channel)) problems.push({ field: `${at}/channel`, message: `${channel}: sms, pda or both` });
    const n = normalizeNumber(mobileRaw, { allowInternational });
    if (mobileRaw === '') problems.push({ field: `${at}/mobile`, message: 'required' });
    else if (!n.ok) problems.push({ field: `${at}/mobile`, message: `${mobileRaw}: ${n.reason}` });
    else {
      const first = lineOfMobile.get(n.number);
      if (first !== undefined) problems.push({ field: `${at}/mobile`, message: `duplicate number: already on line ${first}` });
      else lineOfMobile.set(n.number, rec.line);
    }
    if (id !== '') {
      const first = lineOfId.get(id);
      if (first !== undefined) problems.push({ field: `${at}/id`, message: `duplicate id: already on line ${first}` });
      else lineOfId.set(id, rec.line);
    }
    const emailRaw = cell('email');
    let email: string | null | undefined;
    if (hasEmail) {
      email = emailRaw === '' ? null : normalizeEmail(emailRaw);
      if (email === undefined) problems.push({ field: `${at}/email`, message: `${emailRaw.slice(0, 80)}: not a mail address (local@domain)` });
      else if (email !== null) {
        const first = lineOfEmail.get(email);
        if (first !== undefined) problems.push({ field: `${at}/email`, message: `duplicate mail address: already on line ${first}` });
        else lineOfEmail.set(email, rec.line);
      }
    }
    let mailAlerts: boolean | undefined;
    if (hasMailAlerts) {
      const raw = cell('mailalerts');
      mailAlerts = parseYesNo(raw);
      if (mailAlerts === undefined) problems.push({ field: `${at}/mailAlerts`, message: `${raw}: true or false (yes/no, 1/0, 是/否)` });
    }
    if (problems.length >= MAX_REPORTED * 10) break;
    rows.push({
      line: rec.line,
      input: {
        ...(id !== '' ? { id } : {}), name, mobile: mobileRaw, unit, roles, channel: channel as ChannelPreference,
        ...(email !== undefined ? { email } : {}),
        ...(mailAlerts !== undefined ? { mailAlerts } : {}),
      },
    });
  }
  if (problems.length > 0) throw invalidImport(problems);
  if (rows.length === 0) throw invalidImport([{ field: '/rows', message: 'the file has a header but no rows' }]);
  return { rows };
}

/** Parse and check a groups file; rows are gathered per group (in first-seen order). */
export function parseGroups(text: string): { groups: { line: number; input: GroupInput }[] } {
  const { records, header, problems } = readTable(text, GROUP_COLUMNS, GROUP_REQUIRED);
  interface Building { line: number; id: string; name: string; unit: string; members: string[]; groups: string[]; roles: RoleRule[] }
  const byId = new Map<string, Building>();
  for (const { rec, at, cell } of tableRows(records, header, problems)) {
    const id = cell('group');
    if (id === '') {
      problems.push({ field: `${at}/group`, message: 'required' });
      continue;
    }
    let g = byId.get(id);
    if (g === undefined) {
      g = { line: rec.line, id, name: '', unit: '', members: [], groups: [], roles: [] };
      byId.set(id, g);
    }
    for (const col of ['name', 'unit'] as const) {
      const v = cell(col);
      if (v === '') continue;
      if (g[col] !== '' && g[col] !== v) problems.push({ field: `${at}/${col}`, message: `${v} differs from ${g[col]} given earlier for group ${id}` });
      else g[col] = v;
    }
    const kind = cell('kind').toLowerCase();
    const member = cell('member');
    if (kind === '' && member === '') continue;
    if (member === '') problems.push({ field: `${at}/member`, message: 'required when kind is given' });
    else if (kind === 'person' || kind === '') g.members.push(member);
    else if (kind === 'group') g.groups.push(member);
    else if (kind === 'role') {
      const [role, unit] = member.split('@', 2);
      g.roles.push(unit !== undefined && unit !== '' ? { role: role as string, unit } : { role: role as string });
    } else problems.push({ field: `${at}/kind`, message: `${kind}: person, group or role` });
    if (problems.length >= MAX_REPORTED * 10) break;
  }
  for (const g of byId.values()) {
    if (g.name === '') problems.push({ field: `/rows/${g.line}/name`, message: `group ${g.id} has no name on any row` });
    if (g.unit === '') problems.push({ field: `/rows/${g.line}/unit`, message: `group ${g.id} has no unit on any row` });
  }
  if (problems.length > 0) throw invalidImport(problems);
  if (byId.size === 0) throw invalidImport([{ field: '/rows', message: 'the file has a header but no rows' }]);
  return {
    groups: [...byId.values()].map((g) => ({ line: g.line, input: { id: g.id, name: g.name, unit: g.unit, members: g.members, groups: g.groups, roles: g.roles } })),
  };
}

export interface ImportOptions {
  readonly allowInternational: boolean;
}

/** Decode, check, apply. Resolves with counts; rejects IMPORT_INVALID (nothing written) with the per-row report. */
export async function importPeople(store: DirectoryStore, actor: Actor, bytes: Uint8Array, encoding: CsvEncoding, opts: ImportOptions): Promise<{ created: number; updated: number; unchanged: number; rows: number }> {
  const text = decodeCsv(bytes, encoding);
  const { rows } = parsePeople(text, opts.allowInternational);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const r = await store.importPeople(actor, rows, { sha256, rows: rows.length, encoding });
  return { ...r, rows: rows.length };
}

export async function importGroups(store: DirectoryStore, actor: Actor, bytes: Uint8Array, encoding: CsvEncoding): Promise<{ created: number; updated: number; groups: number }> {
  const text = decodeCsv(bytes, encoding);
  const { groups } = parseGroups(text);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const r = await store.importGroups(actor, groups, { sha256, groups: groups.length, encoding });
  return { ...r, groups: groups.length };
}

/** People as CSV (the import format), limited to a delegated admin's subtree. */
export function exportPeople(store: DirectoryStore, actor: Actor, maxRows = MAX_IMPORT_ROWS): string {
  const rows: string[][] = [[...PEOPLE_COLUMNS]];
  const scope = actor.unit !== undefined ? new Set(store.subtree(actor.unit)) : undefined;
  let cursor: string | undefined;
  for (let pages = 0; pages <= maxRows / 1000 + 1; pages++) {
    const page = store.listPeople({ limit: 1000, ...(cursor !== undefined ? { cursor } : {}) });
    for (const p of page.items) {
      if (scope && !scope.has(p.unit)) continue;
      rows.push([p.id, p.name, p.mobile, p.unit, p.roles.join(';'), p.channel, p.email ?? '', p.mailAlerts ? 'true' : 'false']);
      if (rows.length > maxRows) break;
    }
    cursor = page.next;
    if (cursor === undefined || rows.length > maxRows) break;
  }
  return formatCsv(rows, { bom: true });
}

/** Groups as CSV (the import format): a definition row per group, then a row per member, nested group and role rule. */
export function exportGroups(store: DirectoryStore, actor: Actor, maxRows = MAX_IMPORT_ROWS): string {
  const rows: string[][] = [[...GROUP_COLUMNS]];
  const scope = actor.unit !== undefined ? new Set(store.subtree(actor.unit)) : undefined;
  let cursor: string | undefined;
  for (let pages = 0; pages <= maxRows; pages++) {
    const page = store.listGroups({ limit: 1000, ...(cursor !== undefined ? { cursor } : {}) });
    for (const g of page.items) {
      if (scope && !scope.has(g.unit)) continue;
      rows.push([g.id, g.name, g.unit, '', '']);
      // A delegated admin's export shows only its subtree: nested groups, role scopes and members a global admin added from elsewhere are left out.
      const shows = (unit: string | undefined): boolean => scope === undefined || unit === undefined || scope.has(unit);
      for (const c of g.groups) if (shows(store.getGroup(c)?.unit ?? '')) rows.push([g.id, '', '', 'group', c]);
      for (const r of g.roles) if (shows(r.unit)) rows.push([g.id, '', '', 'role', r.unit !== undefined ? `${r.role}@${r.unit}` : r.role]);
      let mc: string | undefined;
      for (let mp = 0; mp <= maxRows; mp++) {
        const members = store.listMembers(g.id, { limit: 1000, ...(mc !== undefined ? { cursor: mc } : {}) });
        for (const m of members.items) if (shows(store.getPerson(m.id)?.unit ?? '')) rows.push([g.id, '', '', 'person', m.id]);
        mc = members.next;
        if (mc === undefined || rows.length > maxRows) break;
      }
      if (rows.length > maxRows) break;
    }
    cursor = page.next;
    if (cursor === undefined || rows.length > maxRows) break;
  }
  return formatCsv(rows, { bom: true });
}

/** Parse, map the header (case-insensitive), report unknown and missing columns and malformed records. */
/**
 * The non-blank rows of a table, each with its error path (`/rows/<line>`)
 * and a cell reader by column name (trimmed, spreadsheet guard removed); a
 * row whose field count differs from the header's is reported, still yielded.
 */
function* tableRows(records: readonly { line: number; fields: string[] }[], header: ReadonlyMap<string, number>, problems: FieldProblem[]): Generator<{ rec: { line: number; fields: string[] }; at: string; cell: (column: string) => string }> {
  for (const rec of records) {
    if (rec.fields.every((f) => f.trim() === '')) continue;
    const at = `/rows/${rec.line}`;
    if (rec.fields.length !== header.size) problems.push({ field: at, message: `${rec.fields.length} fields; the header has ${header.size}` });
    const cell = (c: string): string => {
      const i = header.get(c);
      return i === undefined ? '' : unguardCell((rec.fields[i] ?? '').trim());
    };
    yield { rec, at, cell };
  }
}

function readTable(text: string, known: readonly string[], required: readonly string[]): { records: { line: number; fields: string[] }[]; header: Map<string, number>; problems: FieldProblem[] } {
  const parsed = parseCsv(text, { maxRecords: MAX_IMPORT_ROWS + 1 });
  const problems: FieldProblem[] = parsed.problems.map((p) => ({ field: `/rows/${p.line}`, message: p.message }));
  const [head, ...records] = parsed.records;
  const header = new Map<string, number>();
  if (head === undefined) {
    problems.push({ field: '/rows/1', message: `the file is empty; the first line must be a header: ${known.join(',')}` });
    return { records: [], header, problems };
  }
  const knownLower = known.map((k) => k.toLowerCase());
  head.fields.forEach((raw, i) => {
    const name = raw.trim().toLowerCase();
    if (!knownLower.includes(name)) problems.push({ field: `/rows/${head.line}/${i + 1}`, message: `unknown column "${raw.trim()}"; columns: ${known.join(', ')}` });
    else if (header.has(name)) problems.push({ field: `/rows/${head.line}/${i + 1}`, message: `column ${name} appears twice` });
    else header.set(name, i);
  });
  for (const r of required) if (!header.has(r)) problems.push({ field: `/rows/${head.line}`, message: `missing column ${r}` });
  return { records, header, problems };
}

/** A yes/no cell; empty is no. Undefined when it is neither. */
function parseYesNo(raw: string): boolean | undefined {
  const v = raw.trim().toLowerCase();
  if (v === '' || v === 'false' || v === 'no' || v === 'n' || v === '0' || v === '否') return false;
  if (v === 'true' || v === 'yes' || v === 'y' || v === '1' || v === '是') return true;
  return undefined;
}

/** Offset of the first byte that breaks UTF-8 (the decoder said there is one). */
function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i] as number;
    const need = c < 0x80 ? 0 : c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : -1;
    if (need < 0) return i;
    for (let k = 1; k <= need; k++) {
      const d = b[i + k];
      if (d === undefined || (d & 0xc0) !== 0x80) return i;
    }
    i += need + 1;
  }
  return b.length;
}

function countNewlines(b: Uint8Array, end: number): number {
  let n = 0;
  for (let i = 0; i < end && i < b.length; i++) if (b[i] === 0x0a) n++;
  return n;
}
