import t from 'tap';
import { KeyVault, decodeDeviceKey, encodeDeviceKey, newDeviceKey, newNonce, responseMac, verifyResponse } from '../../src/pda/keys.js';

const SECRET = 'a-test-secret-that-is-long-enough-0123456789';

t.test('the HMAC response is bound to key, nonce and device id', async (t) => {
  const key = newDeviceKey();
  const nonce = newNonce();
  const mac = responseMac(key, nonce, 'pda-1');
  t.equal(mac.length, 32);
  t.ok(verifyResponse(key, nonce, 'pda-1', mac), 'right key, nonce, id');
  t.notOk(verifyResponse(newDeviceKey(), nonce, 'pda-1', mac), 'another key');
  t.notOk(verifyResponse(key, newNonce(), 'pda-1', mac), 'another nonce (a replay in a new session)');
  t.notOk(verifyResponse(key, nonce, 'pda-2', mac), 'another device id');
  t.notOk(verifyResponse(key, nonce, 'pda-1', mac.subarray(0, 31)), 'short mac');
});

t.test('device keys travel as 43 characters of base64url, strictly', async (t) => {
  const key = newDeviceKey();
  const text = encodeDeviceKey(key);
  t.equal(text.length, 43);
  t.same(decodeDeviceKey(text), key);
  t.throws(() => decodeDeviceKey(text.slice(1)), { code: 'VALIDATION' });
  t.throws(() => decodeDeviceKey(`${text.slice(0, 42)}+`), { code: 'VALIDATION' }, 'not base64url');
});

t.test('KeyVault: sealed keys open only with the same secret, device and version', async (t) => {
  const vault = new KeyVault(SECRET);
  const key = newDeviceKey();
  const sealed = vault.seal('pda-1', 3, key);
  t.not(sealed.subarray(28).toString('hex'), key.toString('hex'), 'ciphertext is not the key');
  t.same(vault.open('pda-1', 3, sealed), key);
  t.equal(vault.open('pda-2', 3, sealed), undefined, 'swapped onto another device');
  t.equal(vault.open('pda-1', 2, sealed), undefined, 'rolled back to another version');
  t.equal(new KeyVault(`${SECRET}x`).open('pda-1', 3, sealed), undefined, 'another secret');
  const tampered = Buffer.from(sealed);
  tampered[tampered.length - 1]! ^= 1;
  t.equal(vault.open('pda-1', 3, tampered), undefined, 'tampered');
  t.equal(vault.open('pda-1', 3, sealed.subarray(1)), undefined, 'truncated');
  t.not(vault.seal('pda-1', 3, key).toString('hex'), sealed.toString('hex'), 'fresh IV per seal');
  t.equal(vault.kekId, new KeyVault(SECRET).kekId, 'fingerprint is stable');
  t.not(vault.kekId, new KeyVault(`${SECRET}x`).kekId);
});

t.test('a short key secret is a configuration error', async (t) => {
  t.throws(() => new KeyVault('short'), { code: 'CONFIG_INVALID' });
});
