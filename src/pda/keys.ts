/**
 * Device keys and the challenge–response proof.
 *
 * A device proves it holds its key by answering the server's single-use
 * nonce with HMAC-SHA-256. The verifier needs the key itself, so "store it
 * hashed" (as for API keys) is not an option: a hash of an HMAC key is as
 * good as no protection if it is what the HMAC is keyed with, and a
 * one-way hash cannot verify an HMAC. The keys are therefore stored
 * *encrypted* (AES-256-GCM) under a key-encryption key derived from
 * `pda.keySecret` (config / env, never in the database). A copy of the LMDB
 * file alone yields no device key; the secret alone yields none either.
 * The GCM additional data binds each ciphertext to its device id and key
 * version, so ciphertexts cannot be swapped between devices or rolled back
 * to an older key of the same device.
 *
 * The proof is bound to the session and to the device:
 *   mac = HMAC-SHA-256(key, "smsgw-pda/1" 0x00 ‖ nonce(32) ‖ u8 len ‖ deviceId)
 * A nonce is drawn per session (32 random bytes), accepted once, and only
 * within `helloTimeoutMs`, so a recorded response is worthless in any other
 * session.
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { GatewayError } from '../core/errors.js';
import { MAC_BYTES, NONCE_BYTES } from './codec.js';

export const DEVICE_KEY_BYTES = 32;
/** Shortest `pda.keySecret` accepted. */
export const MIN_KEY_SECRET_LENGTH = 32;

const MAC_CONTEXT = Buffer.from('smsgw-pda/1\0', 'latin1');
const IV_BYTES = 12;
const TAG_BYTES = 16;

export function newNonce(): Buffer {
  return randomBytes(NONCE_BYTES);
}

export function newDeviceKey(): Buffer {
  return randomBytes(DEVICE_KEY_BYTES);
}

/** The form a key is handed to the provisioning officer in (shown once). */
export function encodeDeviceKey(key: Uint8Array): string {
  return Buffer.from(key).toString('base64url');
}

export function decodeDeviceKey(text: string): Buffer {
  const key = Buffer.from(text, 'base64url');
  if (key.length !== DEVICE_KEY_BYTES || key.toString('base64url') !== text) {
    throw new GatewayError('VALIDATION', `a device key is ${DEVICE_KEY_BYTES} bytes in base64url (43 characters)`);
  }
  return key;
}

export function responseMac(key: Uint8Array, nonce: Uint8Array, deviceId: string): Buffer {
  const h = createHmac('sha256', key);
  h.update(MAC_CONTEXT);
  h.update(nonce);
  h.update(Buffer.of(deviceId.length));
  h.update(deviceId, 'latin1');
  return h.digest();
}

/** Constant-time check of a device's response. */
export function verifyResponse(key: Uint8Array, nonce: Uint8Array, deviceId: string, mac: Uint8Array): boolean {
  if (mac.length !== MAC_BYTES) return false;
  return timingSafeEqual(responseMac(key, nonce, deviceId), mac);
}

/** Encrypts and decrypts device keys at rest. */
export class KeyVault {
  private readonly kek: Buffer;
  /** Short fingerprint of the key-encryption key: tells "the secret changed" from "the record is corrupt". */
  readonly kekId: string;

  constructor(secret: string) {
    if (secret.length < MIN_KEY_SECRET_LENGTH) {
      throw new GatewayError('CONFIG_INVALID', `pda.keySecret must be at least ${MIN_KEY_SECRET_LENGTH} characters (set SMSGW_PDA__KEY_SECRET)`, {
        details: [{ field: '/pda/keySecret', message: `at least ${MIN_KEY_SECRET_LENGTH} characters` }],
      });
    }
    this.kek = Buffer.from(hkdfSync('sha256', Buffer.from(secret, 'utf8'), Buffer.from('smsgw-pda-kek'), Buffer.from('device-keys/v1'), 32));
    this.kekId = createHash('sha256').update(this.kek).digest('hex').slice(0, 16);
  }

  /** iv(12) ‖ tag(16) ‖ ciphertext. */
  seal(deviceId: string, version: number, key: Uint8Array): Buffer {
    const iv = randomBytes(IV_BYTES);
    const c = createCipheriv('aes-256-gcm', this.kek, iv);
    c.setAAD(aad(deviceId, version));
    const ct = Buffer.concat([c.update(key), c.final()]);
    return Buffer.concat([iv, c.getAuthTag(), ct]);
  }

  /** The key, or undefined when the record does not authenticate (wrong secret, tampered, or another device's). */
  open(deviceId: string, version: number, sealed: Uint8Array): Buffer | undefined {
    if (sealed.length !== IV_BYTES + TAG_BYTES + DEVICE_KEY_BYTES) return undefined;
    const buf = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
    try {
      const d = createDecipheriv('aes-256-gcm', this.kek, buf.subarray(0, IV_BYTES));
      d.setAAD(aad(deviceId, version));
      d.setAuthTag(buf.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
      return Buffer.concat([d.update(buf.subarray(IV_BYTES + TAG_BYTES)), d.final()]);
    } catch {
      return undefined;
    }
  }
}

function aad(deviceId: string, version: number): Buffer {
  return Buffer.from(`smsgw-pda-key|${deviceId}|${version}`, 'latin1');
}
