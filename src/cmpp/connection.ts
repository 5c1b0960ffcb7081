/**
 * One CMPP TCP connection: frames in (FrameReader → decodePdu), frames out
 * (writes within one tick corked together). Used by the client link and the
 * simulator alike; each (re)connect is a fresh CmppConnection.
 *
 * A frame that does not decode is handed to `onBadFrame` (the owner answers
 * or drops that frame); a broken stream (Total_Length out of range) destroys
 * the connection — there is no next frame boundary to find. A listener that
 * throws destroys it too, so nothing escapes into the socket's event loop.
 */
import { Socket, connect as netConnect } from 'node:net';
import { FrameReader, decodePdu, type CmppPdu, type CmppVersion, type DecodeResult } from './codec.js';

export class CmppConnection {
  private readonly frames = new FrameReader();
  private pduListener: ((pdu: CmppPdu) => void) | undefined;
  private badListener: ((bad: Extract<DecodeResult, { ok: false }>) => void) | undefined;
  private readonly closeListeners: (() => void)[] = [];
  private errorListener: ((err: Error) => void) | undefined;
  private corked = false;
  private closed = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  constructor(readonly socket: Socket, readonly version: CmppVersion) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => {
      this.errorListener?.(err);
    });
    socket.on('close', () => {
      if (this.closed) return;
      this.closed = true;
      for (const l of this.closeListeners) l();
    });
  }

  static connect(host: string, port: number, version: CmppVersion): CmppConnection {
    return new CmppConnection(netConnect({ host, port }), version);
  }

  onConnect(listener: () => void): void {
    this.socket.once('connect', listener);
  }

  onPdu(listener: (pdu: CmppPdu) => void): void {
    this.pduListener = listener;
  }

  onBadFrame(listener: (bad: Extract<DecodeResult, { ok: false }>) => void): void {
    this.badListener = listener;
  }

  onClose(listener: () => void): void {
    this.closeListeners.push(listener);
  }

  onError(listener: (err: Error) => void): void {
    this.errorListener = listener;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  get writable(): boolean {
    return !this.closed && this.socket.writable;
  }

  /** Write one encoded PDU; false when the socket is no longer writable (nothing sent). */
  write(frame: Buffer): boolean {
    if (!this.writable) return false;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncork);
    }
    this.socket.write(frame);
    return true;
  }

  /** Half-close after flushing. */
  close(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    const frames = this.frames.push(chunk);
    try {
      for (const f of frames) {
        const r = decodePdu(f, this.version);
        if (r.ok) this.pduListener?.(r.pdu);
        else this.badListener?.(r);
      }
    } catch (err) {
      this.errorListener?.(err instanceof Error ? err : new Error(String(err)));
      this.socket.destroy();
      return;
    }
    if (this.frames.broken !== undefined) {
      this.errorListener?.(new Error(`CMPP stream broken: ${this.frames.broken}`));
      this.socket.destroy();
    }
  }
}
