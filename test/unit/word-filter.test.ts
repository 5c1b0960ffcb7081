import t from 'tap';
import { WordFilter, foldCodeUnit } from '../../src/core/word-filter.js';
import { seededRandom } from '../support/seeded-random.js';

const rng = seededRandom;

const HAN = '的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理府研质';

function randomWord(r: () => number): string {
  const len = 2 + Math.floor(r() * 5);
  let w = '';
  for (let i = 0; i < len; i++) w += HAN[Math.floor(r() * HAN.length)];
  return w;
}

/** Reference: every (start, word) where the word occurs, by brute force. */
function naive(words: readonly string[], text: string): Set<string> {
  const out = new Set<string>();
  for (const w of words) {
    for (let at = text.indexOf(w); at !== -1; at = text.indexOf(w, at + 1)) out.add(`${at}:${w}`);
  }
  return out;
}

t.test('finds listed words, with their positions', async (t) => {
  const f = WordFilter.build(['法轮', 'abc', '赌博']);
  t.equal(f.size, 3);
  t.same(f.firstMatch('请勿参与赌博活动'), { word: '赌博', start: 4, end: 6 });
  t.notOk(f.test('今天下午三点开会'), 'clean text passes');
  t.same(f.matchAll('xxABCxx赌博'), [{ word: 'abc', start: 2, end: 5 }, { word: '赌博', start: 7, end: 9 }], 'case-insensitive for Latin letters');
  t.ok(f.test('ＡＢＣ'), 'full-width letters fold to ASCII');
});

t.test('overlapping and nested words are all reported', async (t) => {
  const f = WordFilter.build(['he', 'she', 'his', 'hers']);
  const got = f.matchAll('ushers').map((m) => `${m.start}:${m.word}`).sort();
  t.same(got, ['1:she', '2:he', '2:hers'].sort());
});

t.test('empty words and repeats are dropped; an empty list matches nothing', async (t) => {
  const f = WordFilter.build(['', '  ', 'abc', 'ABC', ' abc ']);
  t.equal(f.size, 1);
  t.notOk(WordFilter.build([]).test('anything'));
  t.same(WordFilter.build(['a']).matchAll('aaa', 2).length, 2, 'limit bounds the matches returned');
});

t.test('ignored characters cannot be used to split a word', async (t) => {
  const f = WordFilter.build(['法轮'], { ignore: ' *·.' });
  t.same(f.firstMatch('看 法 * 轮 功'), { word: '法轮', start: 2, end: 7 });
  t.notOk(WordFilter.build(['法轮']).test('法 轮'), 'without ignore the spaced form is not a match');
});

t.test('bounds: a word too long or too many words is a RangeError', async (t) => {
  t.throws(() => WordFilter.build(['x'.repeat(65)]), RangeError);
  t.throws(() => WordFilter.build(['a', 'b', 'c'], { maxWords: 2 }), RangeError);
});

t.test('foldCodeUnit', async (t) => {
  t.equal(foldCodeUnit('A'.charCodeAt(0)), 'a'.charCodeAt(0));
  t.equal(foldCodeUnit('Ｚ'.charCodeAt(0)), 'z'.charCodeAt(0));
  t.equal(foldCodeUnit('０'.charCodeAt(0)), '0'.charCodeAt(0));
  t.equal(foldCodeUnit(0x3000), 0x20);
  t.equal(foldCodeUnit('中'.charCodeAt(0)), '中'.charCodeAt(0));
});

t.test('10,000-word list: agrees with a brute-force search on 100 random 10 KB texts', async (t) => {
  const r = rng(42);
  const words = new Set<string>();
  while (words.size < 10_000) words.add(randomWord(r));
  const list = [...words];
  const f = WordFilter.build(list);
  t.equal(f.size, 10_000);
  let texts = 0;
  let matches = 0;
  for (let k = 0; k < 100; k++) {
    let text = '';
    while (text.length < 3_400) {
      // ≈ 10 KB of UTF-8 (three bytes per Han character).
      // Mostly random characters, now and then a listed word, so both paths are exercised.
      text += r() < 0.01 ? (list[Math.floor(r() * list.length)] as string) : (HAN[Math.floor(r() * HAN.length)] as string);
    }
    const want = naive(list, text);
    const got = new Set(f.matchAll(text, 1_000_000).map((m) => `${m.start}:${m.word}`));
    if (got.size !== want.size || [...want].some((x) => !got.has(x))) {
      t.fail(`text ${k}: ${got.size} matches, brute force ${want.size}`);
      return;
    }
    if (f.matchAll(text, 10).some((m) => text.slice(m.start, m.end) !== m.word)) {
      t.fail(`text ${k}: a match's positions do not cover its word`);
      return;
    }
    texts++;
    matches += want.size;
  }
  t.equal(texts, 100, `every text agreed (${matches} matches in all)`);
  t.ok(matches > 0, 'the texts did contain listed words');
});
