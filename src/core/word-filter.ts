/**
 * Sensitive-word matching: an Aho–Corasick automaton over UTF-16 code units.
 *
 * One pass over the text finds every listed word, whatever the list's
 * length: the cost is O(text + matches), where a naive loop of
 * `text.includes(word)` is O(text × words). With a 10,000-word list that is
 * the difference between scanning a 10 KB text once and 10,000 times.
 *
 * Layout, chosen for the matching loop (building happens once, at start-up):
 * - the root's transitions are a dense table indexed by code unit (65,536
 *   entries), because most steps of a scan over text that matches nothing
 *   start from the root;
 * - every other state keeps its transitions sorted by code unit in one flat
 *   array (CSR: `edgeStart[s] .. edgeStart[s+1]`), searched by bisection;
 * - `fail` is the usual failure link; `dict` points to the nearest state on
 *   the failure chain where a word ends, so reporting every match costs
 *   nothing for states that end no word.
 *
 * Matching is case-insensitive for Latin letters and treats full-width ASCII
 * (Ａ, ｂ, ０) as the half-width character, so "ＡＢＣ" matches "abc". Characters
 * listed in `ignore` (say spaces and punctuation) are skipped in the text and
 * removed from the words, so a word cannot be dodged by writing "法 轮" for
 * "法轮". Positions are code-unit offsets into the original text.
 *
 * Pure: no I/O.
 */

export interface WordFilterOptions {
  /** Characters skipped in the text and removed from words (e.g. " .·*"). Default: none. */
  readonly ignore?: string;
  /** Longest word accepted (code units after normalisation). Default 64. */
  readonly maxWordLength?: number;
  /** Most words accepted. Default 1,000,000. */
  readonly maxWords?: number;
}

export interface WordMatch {
  /** The listed word as given (before normalisation). */
  readonly word: string;
  /** Offset of the match's first code unit in the text. */
  readonly start: number;
  /** Offset just past the match's last code unit. */
  readonly end: number;
}

const ROOT = 0;
const NONE = -1;

/** Lower-case ASCII letters, fold full-width ASCII and the ideographic space to ASCII. */
export function foldCodeUnit(c: number): number {
  if (c >= 0xff01 && c <= 0xff5e) c -= 0xfee0;
  else if (c === 0x3000) return 0x20;
  if (c >= 0x41 && c <= 0x5a) return c + 0x20;
  return c;
}

export class WordFilter {
  /** Number of distinct words (after normalisation). */
  readonly size: number;
  private readonly words: readonly string[];
  private readonly rootNext: Int32Array;
  private readonly edgeStart: Int32Array;
  private readonly edgeChar: Uint16Array;
  private readonly edgeTarget: Int32Array;
  private readonly fail: Int32Array;
  /** Word index ending exactly at a state, or NONE. */
  private readonly out: Int32Array;
  /** Nearest state on the failure chain (excluding itself) where a word ends, or NONE. */
  private readonly dict: Int32Array;
  /** Normalised length of each word (code units), to locate a match's start. */
  private readonly lengths: Int32Array;
  private readonly ignored: Uint8Array;
  private readonly maxLength: number;

  private constructor(parts: {
    words: string[]; rootNext: Int32Array; edgeStart: Int32Array; edgeChar: Uint16Array; edgeTarget: Int32Array;
    fail: Int32Array; out: Int32Array; dict: Int32Array; lengths: Int32Array; ignored: Uint8Array; maxLength: number;
  }) {
    this.words = parts.words;
    this.size = parts.words.length;
    this.rootNext = parts.rootNext;
    this.edgeStart = parts.edgeStart;
    this.edgeChar = parts.edgeChar;
    this.edgeTarget = parts.edgeTarget;
    this.fail = parts.fail;
    this.out = parts.out;
    this.dict = parts.dict;
    this.lengths = parts.lengths;
    this.ignored = parts.ignored;
    this.maxLength = parts.maxLength;
  }

  /**
   * Build the automaton. Words are trimmed; empty ones and repeats (after
   * normalisation) are dropped. Throws RangeError for a word or a list over
   * the configured bounds (a config mistake, reported at start-up).
   */
  static build(list: Iterable<string>, options: WordFilterOptions = {}): WordFilter {
    const maxWordLength = options.maxWordLength ?? 64;
    const maxWords = options.maxWords ?? 1_000_000;
    const ignored = new Uint8Array(65_536);
    for (const ch of options.ignore ?? '') {
      for (let i = 0; i < ch.length; i++) ignored[foldCodeUnit(ch.charCodeAt(i))] = 1;
    }
    // Trie under construction: one Map of children per state.
    const children: Array<Map<number, number>> = [new Map<number, number>()];
    const outList: number[] = [NONE];
    const words: string[] = [];
    const lengths: number[] = [];
    let maxLength = 0;
    for (const raw of list) {
      const word = raw.trim();
      let s = ROOT;
      let len = 0;
      for (let i = 0; i < word.length; i++) {
        const c = foldCodeUnit(word.charCodeAt(i));
        if (ignored[c] === 1) continue;
        len++;
        const node = children[s] as Map<number, number>;
        let next = node.get(c);
        if (next === undefined) {
          next = children.length;
          children.push(new Map());
          outList.push(NONE);
          node.set(c, next);
        }
        s = next;
      }
      if (len === 0 || outList[s] !== NONE) continue; // empty, or the same word again
      if (len > maxWordLength) throw new RangeError(`word ${words.length + 1} is ${len} characters long; at most ${maxWordLength}`);
      if (words.length >= maxWords) throw new RangeError(`more than ${maxWords} words`);
      outList[s] = words.length;
      words.push(word);
      lengths.push(len);
      if (len > maxLength) maxLength = len;
    }

    const n = children.length;
    const rootNext = new Int32Array(65_536);
    const edgeStart = new Int32Array(n + 1);
    let edges = 0;
    for (let s = 1; s < n; s++) edges += (children[s] as Map<number, number>).size;
    const edgeChar = new Uint16Array(edges);
    const edgeTarget = new Int32Array(edges);
    for (const [c, t] of children[ROOT] as Map<number, number>) rootNext[c] = t;
    let e = 0;
    for (let s = 1; s < n; s++) {
      edgeStart[s] = e;
      const sorted = [...(children[s] as Map<number, number>)].sort((a, b) => a[0] - b[0]);
      for (const [c, t] of sorted) {
        edgeChar[e] = c;
        edgeTarget[e] = t;
        e++;
      }
    }
    edgeStart[n] = e;
    edgeStart[0] = 0;

    const fail = new Int32Array(n);
    const out = Int32Array.from(outList);
    const dict = new Int32Array(n).fill(NONE);
    const filter = new WordFilter({ words, rootNext, edgeStart, edgeChar, edgeTarget, fail, out, dict, lengths: Int32Array.from(lengths), ignored, maxLength });
    // Breadth-first: a state's failure link is computed from its parent's, which is shallower.
    const queue = new Int32Array(n);
    let head = 0;
    let tail = 0;
    for (const [, t] of children[ROOT] as Map<number, number>) {
      fail[t] = ROOT;
      queue[tail++] = t;
    }
    while (head < tail) {
      const s = queue[head++] as number;
      for (const [c, t] of children[s] as Map<number, number>) {
        fail[t] = filter.step(fail[s] as number, c);
        const f = fail[t];
        dict[t] = out[f] !== NONE ? f : (dict[f] as number);
        queue[tail++] = t;
      }
    }
    return filter;
  }

  /** True when the text contains a listed word. */
  test(text: string): boolean {
    return this.scan(text, 1).length > 0;
  }

  /** The match that ends first in the text, or undefined. */
  firstMatch(text: string): WordMatch | undefined {
    return this.scan(text, 1)[0];
  }

  /** Matches in the order they end, at most `limit` (overlapping matches included). */
  matchAll(text: string, limit = 100): WordMatch[] {
    return this.scan(text, Math.max(0, limit));
  }

  /** The automaton's transition from `s` on code unit `c`, following failure links. */
  private step(s: number, c: number): number {
    for (;;) {
      if (s === ROOT) return this.rootNext[c] as number;
      let lo = this.edgeStart[s] as number;
      let hi = (this.edgeStart[s + 1] as number) - 1;
      while (lo <= hi) {
        const mid = (lo + hi) >>> 1;
        const m = this.edgeChar[mid] as number;
        if (m === c) return this.edgeTarget[mid] as number;
        if (m < c) lo = mid + 1;
        else hi = mid - 1;
      }
      s = this.fail[s] as number;
    }
  }

  private scan(text: string, limit: number): WordMatch[] {
    const found: WordMatch[] = [];
    if (this.size === 0 || limit === 0) return found;
    const { ignored, out, dict, rootNext } = this;
    // Offsets of the last `maxLength` counted code units, to find where a match starts when characters are skipped.
    const ring = new Int32Array(this.maxLength);
    const ringSize = this.maxLength;
    let counted = 0;
    let s = ROOT;
    for (let i = 0; i < text.length; i++) {
      const c = foldCodeUnit(text.charCodeAt(i));
      if (ignored[c] === 1) continue;
      ring[counted % ringSize] = i;
      counted++;
      // The root step inline: the common case for text that matches nothing.
      s = s === ROOT ? (rootNext[c] as number) : this.step(s, c);
      if (s === ROOT) continue;
      let o = out[s] !== NONE ? s : (dict[s] as number);
      while (o !== NONE) {
        const w = out[o] as number;
        const len = this.lengths[w] as number;
        found.push({ word: this.words[w] as string, start: ring[(counted - len) % ringSize] as number, end: i + 1 });
        if (found.length >= limit) return found;
        o = dict[o] as number;
      }
    }
    return found;
  }
}
