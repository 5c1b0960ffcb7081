/**
 * Types for the untyped `smpp` package (0.5.1), covering only what
 * src/smpp/wire.ts uses. Everything else goes through wire.ts, which adds the
 * guards the package lacks; import the package nowhere else.
 */
declare module 'smpp' {
  import type { EventEmitter } from 'node:events';
  import type { Socket, Server as NetServer } from 'node:net';

  /** A decoded or to-be-encoded PDU: header plus whatever fields its command has. */
  interface RawPdu {
    command: string;
    command_id: number;
    command_status: number;
    sequence_number: number;
    command_length: number;
    isResponse(): boolean;
    response(options?: Record<string, unknown>): RawPdu;
    toBuffer(): Buffer;
    [field: string]: unknown;
  }

  interface PduConstructor {
    new (command: string, options?: Record<string, unknown>): RawPdu;
    new (buffer: Buffer): RawPdu;
    fromBuffer(buffer: Buffer): RawPdu | false;
    maxLength: number;
  }

  interface RawSession extends EventEmitter {
    socket: Socket;
    sequence: number;
    send(pdu: RawPdu, responseCallback?: (pdu: RawPdu) => void, sendCallback?: (pdu: RawPdu) => void): boolean;
    close(callback?: () => void): void;
    destroy(callback?: () => void): void;
    pause(): void;
    resume(): void;
  }

  interface RawServer extends NetServer {
    sessions: RawSession[];
  }

  interface ConnectOptions {
    host: string;
    port: number;
    tls?: boolean;
    rejectUnauthorized?: boolean;
    servername?: string;
    ca?: string | Buffer | (string | Buffer)[];
    [option: string]: unknown;
  }

  interface GsmCoder {
    encode(text: string, encoding?: number): Buffer;
    decode(bytes: Buffer, encoding?: number): string;
  }

  interface ParamDef {
    type: unknown;
    default?: unknown;
    filter?: unknown;
  }

  interface CommandDef {
    id: number;
    params?: Record<string, ParamDef>;
    tlvMap?: Record<string, string>;
  }

  interface TlvDef {
    id: number;
    type: unknown;
    filter?: unknown;
    multiple?: boolean;
  }

  interface SmppModule {
    PDU: PduConstructor;
    Session: new (options: { socket: Socket } | ConnectOptions) => RawSession;
    connect(options: ConnectOptions, listener?: () => void): RawSession;
    createServer(options: Record<string, unknown>, listener?: (session: RawSession) => void): RawServer;
    errors: Record<string, number>;
    consts: Record<string, Record<string, number>>;
    gsmCoder: GsmCoder;
    commands: Record<string, CommandDef | undefined>;
    tlvs: Record<string, TlvDef | undefined>;
    /** The same definitions by TLV id, each with its tag (the package sets it). */
    tlvsById: Record<number, (TlvDef & { readonly tag: string }) | undefined>;
    /** Define (or redefine) a command, for every session in the process. */
    addCommand(command: string, def: CommandDef): void;
    addTLV(tag: string, def: TlvDef): void;
  }

  const smpp: SmppModule;
  export default smpp;
  export type { RawPdu, RawSession, RawServer, ConnectOptions, SmppModule, CommandDef, TlvDef };
}
