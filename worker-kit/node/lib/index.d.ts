// Types of openim-gateway-worker, written by hand on the generated lib/models.d.ts.

import type { AfterCommandName, BeforeCommandName, CommandName, Commands } from "./models";

export * from "./models";

/** This package's version: the version of the worker protocol it speaks. */
export declare const VERSION: string;

// --- Names shared with the gateway ---------------------------------------------------------

export declare const DEFAULT_SUBJECT_PREFIX: "openim.callback";
export declare const QUEUE_GROUP: "openim-workers";
export declare const BEFORE_SET_GROUP_MEMBER_INFO: "callbackBeforeSetGroupMemberInfoCommand";
export declare const HEADER_REQUEST_ID: "X-Request-Id";
export declare const HEADER_DEADLINE_UNIX_MS: "X-Deadline-Unix-Ms";
export declare const HEADER_SERVICE_ERROR: "Nats-Service-Error";
export declare const HEADER_SERVICE_ERROR_CODE: "Nats-Service-Error-Code";
export declare const HEADER_CALLBACK_COMMAND: "X-Callback-Command";
export declare const PING_INTERVAL_MS: number;
export declare const SHUTDOWN_GRACE_MS: number;
export declare const EXIT_OK: 0;
export declare const EXIT_CANNOT_RUN: 1;
export declare const EXIT_BAD_SETTINGS: 2;

// --- Answers --------------------------------------------------------------------------------

export declare const INT32_MIN: number;
export declare const INT32_MAX: number;
export declare const MIN_REJECT_ERR_CODE: 100;

/** The commands whose answer may carry changes. */
export type ModifiableCommandName = {
  [C in BeforeCommandName]: [Commands[C]["changes"]] extends [never] ? never : C;
}[BeforeCommandName];

/** An OpenIM answer: the five common fields plus the command's own fields to write. Build it
 * with `answer.allow()`, `answer.reject()` or `answer.modify()`. */
export declare class Decision {
  private constructor();
  readonly actionCode: number;
  readonly errCode: number;
  readonly errMsg: string;
  readonly errDlt: string;
  readonly nextCode: number;
  readonly fields: Readonly<Record<string, unknown>>;
  readonly isReject: boolean;
  toObject(): Record<string, unknown>;
  toJSON(): Record<string, unknown>;
}

/** Let the operation through unchanged. */
export declare function allow(): Decision;
/** Refuse the operation. OpenIM shows `errCode` (100..=2147483647, else RangeError) and
 * `errMsg` to the user. */
export declare function reject(errCode: number, errMsg: string, errDlt?: string): Decision;
/** Allow, writing these fields of `command`'s answer; a field the command does not have or a
 * value of the wrong type throws TypeError. null/undefined fields are left out (kept). */
export declare function modify<C extends ModifiableCommandName>(command: C, changes: Commands[C]["changes"]): Decision;

/** The three answers. */
export declare const answer: {
  readonly allow: typeof allow;
  readonly reject: typeof reject;
  readonly modify: typeof modify;
};

/** The changes of `command` checked against its shape, without the null/undefined ones. */
export declare function checkChanges<C extends ModifiableCommandName>(
  command: C,
  changes: Commands[C]["changes"],
): Commands[C]["changes"];

// --- Requests and handlers ------------------------------------------------------------------

/** The body is not the command's request; the message goes in a header, never the body. */
export declare class BadRequest extends Error {
  constructor(message: string);
}

/** Strict JSON as OpenIM writes it: UTF-8, nothing after the value. Throws BadRequest. */
export declare function parseJson(payload: Uint8Array | string): unknown;
/** callbackBeforeSetGroupMemberInfoCommand's request, checked. Throws BadRequest. */
export declare function parseSetGroupMemberInfoRequest(
  obj: unknown,
): Readonly<Commands["callbackBeforeSetGroupMemberInfoCommand"]["request"]>;
/** Any JSON object (the parser of commands without a typed one). Throws BadRequest. */
export declare function jsonObject(obj: unknown): Record<string, unknown>;
export declare const REQUEST_TYPES: { readonly [command: string]: (obj: unknown) => unknown };

/** A before-callback handler: the request in, the answer out (may be async). */
export type Handler<C extends BeforeCommandName> = (request: Commands[C]["request"]) => Decision | Promise<Decision>;
/** Handlers by command name. */
export type Handlers = { [C in BeforeCommandName]?: Handler<C> };

export interface Reply {
  body: Uint8Array;
  headers: Record<string, string> | null;
  decision: Decision | null;
}
export declare function serviceError(code: string, description: string): Reply;
/** Parses the body, runs the handler and turns the outcome into a reply (400/500 as service errors). */
export declare function respond(
  handler: (request: any) => Decision | Promise<Decision>,
  parse: (obj: unknown) => unknown,
  payload: Uint8Array | string,
): Promise<Reply>;

// --- Deadlines ------------------------------------------------------------------------------

/** The X-Deadline-Unix-Ms value as Unix ms, or null when absent or malformed. */
export declare function deadlineUnixMs(value: string | undefined | null): bigint | null;
export declare function nowUnixMs(): bigint;
/** Past only once the clock is after the deadline. */
export declare function isPast(deadline: bigint, now: bigint): boolean;

// --- Settings and logs ----------------------------------------------------------------------

export declare const NATS_URL: "NATS_URL";
export declare const WORKER_SUBJECT_PREFIX: "WORKER_SUBJECT_PREFIX";
export declare const WORKER_CONCURRENCY: "WORKER_CONCURRENCY";
export declare const WORKER_LOG_LEVEL: "WORKER_LOG_LEVEL";
export declare const WORKER_NATS_CREDS: "WORKER_NATS_CREDS";
export declare const WORKER_NATS_NKEY: "WORKER_NATS_NKEY";
export declare const WORKER_NATS_TLS_CA: "WORKER_NATS_TLS_CA";
export declare const WORKER_NATS_TLS_CERT: "WORKER_NATS_TLS_CERT";
export declare const WORKER_NATS_TLS_KEY: "WORKER_NATS_TLS_KEY";
export declare const DEFAULT_NATS_URL: string;
export declare const DEFAULT_CONCURRENCY: number;
export declare const MAX_CONCURRENCY: number;
export declare const KIT_VARIABLES: readonly string[];
export declare const WHITESPACE_CHARS: string;
export declare const LOG_LEVELS: { readonly [name: string]: number };

export type Env = Record<string, string | undefined>;

/**
 * How the worker authenticates to NATS and checks the server (a user and password or a token
 * go in NATS_URL): file paths from the WORKER_NATS_* variables, null when unset.
 */
export interface Security {
  /** WORKER_NATS_CREDS: a creds file (user JWT and nkey seed); not with nkeyFile. */
  readonly credsFile: string | null;
  /** WORKER_NATS_NKEY: a file holding a user nkey seed (SU...). */
  readonly nkeyFile: string | null;
  /** WORKER_NATS_TLS_CA: a PEM CA file; set, TLS is required. */
  readonly tlsCaFile: string | null;
  /** WORKER_NATS_TLS_CERT and WORKER_NATS_TLS_KEY: a PEM client certificate and its key, both or neither. */
  readonly tlsCertFile: string | null;
  readonly tlsKeyFile: string | null;
}

export interface Settings {
  natsServers: string[];
  subjectPrefix: string;
  concurrency: number;
  logLevel: number;
  /** Absent means none (no creds, nkey or TLS files). */
  security?: Security;
}

/** A setting that cannot be used; `problems` holds one line per bad value. */
export declare class SettingsError extends Error {
  constructor(variable: string, value: unknown, rule: string);
  readonly variable: string | null;
  readonly problems: string[];
  static of(problems: string[]): SettingsError;
}

export declare function readSettings(env?: Env): Settings;
/** The WORKER_NATS_* files, each checked readable, the pairs consistent; throws SettingsError. */
export declare function readSecurity(env?: Env): Security;
export declare function settingsProblems(env?: Env, options?: { variables?: string[] }): string[];
export declare function misspelledVariables(env: Env, known: readonly string[]): string[];
export declare function editDistance(a: string, b: string): number;
export declare function collectSettings(readers: Array<() => unknown>): { values: unknown[]; problems: string[] };
export declare function parseIntSetting(env: Env, variable: string, fallback: number, low: number, high: number): number;
export declare function parseNatsUrls(value: string): string[];
export declare function redactNatsUrls(value: string): string;
export declare function normaliseWhitespace(text: string): string;
export declare function isValidSubject(subject: string): boolean;
export declare function isValidName(name: unknown): boolean;
export declare function parseNameSetting(env: Env, variable: string, fallback: string): string;
/** Prints each problem on stderr, prefixed by the program's name. */
export declare function reportProblems(name: string, problems: string[]): void;

export declare const log: {
  level: number;
  program: string;
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
};

/** A promise resolved with "signal" on the first SIGTERM or SIGINT. */
export declare function stopOnSignals(): Promise<"signal">;

// --- Connection -----------------------------------------------------------------------------

export declare const CONNECT_LOG_INTERVAL_MS: number;
export declare const RECONNECT_WAIT_MS: number;
/** Once per key per interval. `admit` returns null when held back, else how many were. */
export declare class LogThrottle {
  constructor(intervalMs?: number, now?: () => number);
  readonly intervalMs: number;
  admit(key: string): number | null;
}

// --- Before-callbacks on NATS ---------------------------------------------------------------

export declare class Semaphore {
  constructor(size: number);
  acquire(): Promise<void>;
  release(): void;
}

/** Subscriptions and in-flight messages of one connection (a client of the `nats` package). */
export declare class Worker {
  constructor(
    client: any,
    settings: Settings,
    handlers: Handlers,
    options?: { parsers?: Record<string, (obj: unknown) => unknown>; makeHeaders?: (plain: Record<string, string>) => unknown },
  );
  subject(command: string): string;
  subscribe(): Promise<void>;
  drain(graceMs?: number): Promise<boolean>;
}

export interface RunOptions {
  /** The client's name on the server and the prefix of every log and error line. */
  name?: string;
  parsers?: Record<string, (obj: unknown) => unknown>;
  env?: Env;
  /** The worker's own setting names, so that their misspellings are caught too. */
  variables?: string[];
}

/** Connects, subscribes, answers until SIGTERM/SIGINT, drains. Resolves to the exit code. */
export declare function serve(settings: Settings, handlers: Handlers, options?: { name?: string; parsers?: RunOptions["parsers"] }): Promise<number>;
/** Reads the settings and serves: 0 after a signal, 1 when it cannot run, 2 for bad settings. */
export declare function run(handlers: Handlers, options?: RunOptions): Promise<number>;

// --- After-callbacks from the gateway's JetStream stream ------------------------------------

export declare const DEFAULT_ACK_WAIT_MS: number;
export declare const DEFAULT_NAK_DELAY_MS: number;
export declare const DEFAULT_FETCH_WAIT_MS: number;
export declare const ACK_TIMEOUT_MS: number;

export type AfterHandler = (
  command: AfterCommandName | string,
  body: any,
  headers: Record<string, string>,
) => void | Promise<void>;

export interface AfterStreamOptions {
  stream: string;
  durable: string;
  handler: AfterHandler;
  commands?: AfterCommandName | AfterCommandName[] | string | string[] | null;
  subjectPrefix?: string;
  concurrency?: number;
  parse?: (payload: Uint8Array) => unknown;
  ackWaitMs?: number;
  nakDelayMs?: number;
  fetchWaitMs?: number;
  maxDeliver?: number | null;
  graceMs?: number;
}

/** What an AbortSignal offers (so these types need no DOM or Node typings). */
export interface AbortSignalLike {
  readonly aborted: boolean;
  addEventListener(type: "abort", listener: () => void, options?: { once?: boolean }): void;
}

export interface AfterStreamStats {
  acked: number;
  retried: number;
  refused: number;
  unconfirmed: number;
  abandoned: number;
}

export declare function afterSubjects(subjectPrefix: string, commands: string | string[] | null | undefined): string[];
export declare function afterCommand(subject: string, headers: Record<string, string>, subjectPrefix: string): string;
export declare function plainHeaders(headers: unknown): Record<string, string>;

export declare class AfterStreamConsumer {
  constructor(client: any, options: AfterStreamOptions);
  readonly stream: string;
  readonly durable: string;
  readonly subjects: string[];
  readonly stats: AfterStreamStats;
  open(): Promise<void>;
  consume(signal?: AbortSignalLike): Promise<AfterStreamStats>;
}

export declare function consumeAfterStream(
  client: any,
  options: AfterStreamOptions & { signal?: AbortSignalLike; onReady?: (consumer: AfterStreamConsumer) => void },
): Promise<AfterStreamStats>;
export declare function serveAfterStream(settings: Settings, options: AfterStreamOptions & { name?: string }): Promise<number>;
export declare function runAfterStream(options: AfterStreamOptions & { name?: string; env?: Env; variables?: string[] }): Promise<number>;

/** Each command's kind and changes type (from the generated models). */
export type { AfterCommandName, BeforeCommandName, CommandName, Commands };
