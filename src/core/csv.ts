/**
 * CSV as RFC 4180 writes it (and as spreadsheet programs export it): fields
 * separated by commas, records by CRLF or LF, fields with commas, quotes or
 * line breaks enclosed in double quotes, a quote inside such a field doubled.
 * A field in quotes may span lines, so a record is not a line: splitting on
 * ',' and '\n' would cut "王五, 科长" in two.
 *
 * The parser never throws on bad input: each malformed record is reported
 * with the line it starts on, and parsing resumes at the next line, so an
 * import can show every problem of a file at once. Decoding bytes (UTF-8,
 * GBK) happens before this, outside core.
 *
 * Spreadsheet formula injection: a cell that starts with = + - @ (or a tab /
 * CR) is run as a formula when the exported file is opened in a spreadsheet.
 * `formatCsv` prefixes such cells with an apostrophe; `unguardCell` takes it
 * off again on import, so export → import round-trips.
 *
 * Pure: no I/O.
 */

export interface CsvRecord {
  /** 1-based line on which the record starts. */
  readonly line: number;
  readonly fields: string[];
}

export interface CsvProblem {
  readonly line: number;
  readonly message: string;
}

export interface CsvParseResult {
  readonly records: CsvRecord[];
  readonly problems: CsvProblem[];
  /** True when parsing stopped at a bound (records or field size). */
  readonly truncated: boolean;
}

export interface CsvParseOptions {
  /** Most records read (a header counts). Default 1,000,000. */
  readonly maxRecords?: number;
  /** Longest field, in code units. Default 10,000. */
  readonly maxFieldLength?: number;
  /** Most fields in one record. Default 256. */
  readonly maxFields?: number;
}

const QUOTE = 0x22;
const COMMA = 0x2c;
const CR = 0x0d;
const LF = 0x0a;

/**
 * Parse CSV text. A leading byte-order mark is skipped; empty lines are
 * skipped (they are not records); a trailing line break is optional.
 */
export function parseCsv(text: string, options: CsvParseOptions = {}): CsvParseResult {
  const maxRecords = options.maxRecords ?? 1_000_000;
  const maxField = options.maxFieldLength ?? 10_000;
  const maxFields = options.maxFields ?? 256;
  const records: CsvRecord[] = [];
  const problems: CsvProblem[] = [];
  const n = text.length;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  let truncated = false;

  while (i < n) {
    if (records.length >= maxRecords) {
      truncated = true;
      problems.push({ line, message: `more than ${maxRecords} records; the rest of the file was not read` });
      break;
    }
    const startLine = line;
    const fields: string[] = [];
    let problem: string | undefined;
    let c = text.charCodeAt(i);
    // An empty line is not a record.
    if (c === LF || c === CR) {
      i += c === CR && text.charCodeAt(i + 1) === LF ? 2 : 1;
      line++;
      continue;
    }
    let endOfRecord = false;
    while (!endOfRecord) {
      let field = '';
      c = text.charCodeAt(i);
      if (c === QUOTE) {
        // Quoted field: runs to the closing quote, across commas and line breaks.
        i++;
        let closed = false;
        let from = i;
        while (i < n) {
          const q = text.charCodeAt(i);
          if (q === QUOTE) {
            field += text.slice(from, i);
            if (text.charCodeAt(i + 1) === QUOTE) {
              field += '"';
              i += 2;
              from = i;
              continue;
            }
            i++;
            closed = true;
            break;
          }
          if (q === LF) line++;
          else if (q === CR && text.charCodeAt(i + 1) !== LF) line++;
          i++;
        }
        if (!closed) {
          problems.push({ line: startLine, message: 'a quoted field is not closed before the end of the file' });
          return { records, problems, truncated: false };
        }
        // After the closing quote only a comma or the end of the record may follow.
        const after = text.charCodeAt(i);
        if (i < n && after !== COMMA && after !== CR && after !== LF) {
          problem ??= `field ${fields.length + 1}: text after the closing quote (a quote inside a quoted field must be doubled: "")`;
          while (i < n && text.charCodeAt(i) !== COMMA && text.charCodeAt(i) !== CR && text.charCodeAt(i) !== LF) i++;
        }
      } else {
        const from = i;
        while (i < n) {
          const q = text.charCodeAt(i);
          if (q === COMMA || q === CR || q === LF) break;
          if (q === QUOTE) problem ??= `field ${fields.length + 1}: a quote in an unquoted field (enclose the field in quotes and double the quote)`;
          i++;
        }
        field = text.slice(from, i);
      }
      if (field.length > maxField) {
        problem ??= `field ${fields.length + 1} is ${field.length} characters long; at most ${maxField}`;
        field = '';
      }
      if (fields.length < maxFields) fields.push(field);
      else problem ??= `more than ${maxFields} fields`;
      const d = text.charCodeAt(i);
      if (d === COMMA) {
        i++;
        // A comma at the very end of the text ends the record with an empty last field.
        if (i >= n) {
          fields.push('');
          endOfRecord = true;
        }
      } else {
        if (d === CR) i += text.charCodeAt(i + 1) === LF ? 2 : 1;
        else if (d === LF) i++;
        if (i <= n) line++;
        endOfRecord = true;
      }
    }
    if (problem !== undefined) problems.push({ line: startLine, message: problem });
    else records.push({ line: startLine, fields });
  }
  return { records, problems, truncated };
}

const NEEDS_QUOTES = /[",\r\n]/;
const FORMULA_START = /^[=+\-@\t\r]/;

/** The cell as written to a file: guarded against formula injection, quoted when needed. */
export function formatCell(value: string): string {
  const guarded = FORMULA_START.test(value) ? `'${value}` : value;
  return NEEDS_QUOTES.test(guarded) || guarded !== guarded.trim() ? `"${guarded.replace(/"/g, '""')}"` : guarded;
}

/** Records to CSV text, CRLF line endings (RFC 4180), with a UTF-8 BOM when asked (Excel needs it to read UTF-8). */
export function formatCsv(rows: Iterable<readonly string[]>, options: { bom?: boolean } = {}): string {
  const lines: string[] = [];
  for (const row of rows) lines.push(row.map(formatCell).join(','));
  return `${options.bom ? '\ufeff' : ''}${lines.join('\r\n')}${lines.length > 0 ? '\r\n' : ''}`;
}

/** Undo `formatCell`'s formula guard: `'=x` → `=x`. Other cells are returned as they are. */
export function unguardCell(value: string): string {
  return value.length > 1 && value.charCodeAt(0) === 0x27 && FORMULA_START.test(value.slice(1)) ? value.slice(1) : value;
}
