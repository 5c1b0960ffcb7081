import t from 'tap';
import { chooseAccount, operatorOf, type Operator } from '../../src/core/route.js';

/** One number per segment: 86 + prefix + padding to 11 national digits. */
function numberFor(prefix: string): string {
  return `86${prefix}${'12345678'.slice(0, 11 - prefix.length)}`;
}

const TABLE: Record<Exclude<Operator, 'intl'>, string[]> = {
  cmcc: [
    '134', '1340', '1345', '1348', '135', '136', '137', '138', '139', '147', '148', '150', '151', '152', '157', '158', '159',
    '165', '172', '178', '182', '183', '184', '187', '188', '195', '197', '198',
    '1703', '1705', '1706',
    '192', // China Broadnet, on China Mobile's network
  ],
  cucc: [
    '130', '131', '132', '145', '146', '155', '156', '166', '167', '171', '175', '176', '185', '186', '196',
    '1704', '1707', '1708', '1709',
  ],
  ctcc: [
    '133', '1349', '149', '153', '173', '174', '177', '180', '181', '189', '190', '191', '193', '199',
    '1700', '1701', '1702',
    '162',
  ],
};

t.test('every listed segment routes to its operator', async (t) => {
  for (const [op, prefixes] of Object.entries(TABLE)) {
    for (const prefix of prefixes) {
      const number = numberFor(prefix);
      t.equal(number.length, 13);
      t.equal(operatorOf(number), op, `${prefix} (${number}) → ${op}`);
    }
  }
  // Every sub-segment of a three-digit segment follows it unless overridden.
  for (let d = 0; d <= 9; d++) {
    t.equal(operatorOf(numberFor(`138${d}`)), 'cmcc');
    t.equal(operatorOf(numberFor(`186${d}`)), 'cucc');
    t.equal(operatorOf(numberFor(`189${d}`)), 'ctcc');
    t.equal(operatorOf(numberFor(`134${d}`)), d === 9 ? 'ctcc' : 'cmcc', `134${d}`);
  }
});

t.test('unlisted Chinese segments route as China Mobile', async (t) => {
  for (const prefix of ['140', '141', '144', '154', '160', '161', '163', '164', '168', '169', '179', '194']) {
    t.equal(operatorOf(numberFor(prefix)), 'cmcc', prefix);
  }
});

t.test('everything that is not 86 + an 11-digit mobile is intl', async (t) => {
  for (const number of [
    '447911123456',
    '14155552671', // NANP, 11 digits starting with 1: not Chinese without its 86
    '13800138000', // not normalised: no country code
    '861380013800', // 12 digits
    '86138001380000', // 14 digits
    '8602012345678', // 86 but not a mobile
    '85291234567',
    '',
    '86138x0138000',
  ]) {
    t.equal(operatorOf(number), 'intl', JSON.stringify(number));
  }
});

t.test('chooseAccount: first account listing the operator, else the first with *', async (t) => {
  const accounts: Array<{ name: string; operators: string[] }> = [
    { name: 'cmcc-1', operators: ['cmcc'] },
    { name: 'any-1', operators: ['*'] },
    { name: 'cmcc-2', operators: ['cmcc', 'cucc'] },
    { name: 'intl', operators: ['intl'] },
    { name: 'any-2', operators: ['*'] },
  ];
  t.equal(chooseAccount('cmcc', accounts)?.name, 'cmcc-1');
  t.equal(chooseAccount('cucc', accounts)?.name, 'cmcc-2', 'an explicit listing beats an earlier *');
  t.equal(chooseAccount('ctcc', accounts)?.name, 'any-1', 'falls back to the first *');
  t.equal(chooseAccount('intl', accounts)?.name, 'intl');
  t.equal(chooseAccount('ctcc', accounts.filter((a) => !a.operators.includes('*'))), undefined, 'no route');
  t.equal(chooseAccount('cmcc', []), undefined);

  // Typical use: route a normalised number.
  const pool = [
    { name: 'mobile', operators: ['cmcc'], tps: 100 },
    { name: 'others', operators: ['*'], tps: 50 },
  ];
  const picked = chooseAccount(operatorOf('8613800138000'), pool);
  t.equal(picked?.tps, 100, 'returns the caller’s own account object');
  t.equal(chooseAccount(operatorOf('8618612345678'), pool)?.name, 'others');
});
