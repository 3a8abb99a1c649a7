// Type declarations for tidings.js, the browser client of a tidings hub (served at /v1/client.js).

export declare const VERSION: string;

/** An event as the hub publishes it (`GET /v1/events`). */
export interface TidingsEvent<T = Record<string, unknown>> {
  /** `<ms>-<seq>`, unique and totally ordered; what `Last-Event-ID` resumes from. */
  id: string;
  /** Dotted lowercase name, e.g. `order.created`. */
  type: string;
  data: T;
  /** ISO 8601 with zone. */
  occurred_at: string;
}

/** A frame that is not a tidings envelope (e.g. the admin feed's `published`, `delivery`, `stats`). */
export interface StreamFrame {
  id: string | undefined;
  type: string;
  /** The parsed JSON, or the raw text when it is not JSON. */
  data: unknown;
}

export interface ResetInfo {
  /** `history_unavailable`: the client was away longer than the hub's history. Refetch your state. */
  reason: string;
}

export type ConnectionState =
  | "connecting"
  | "open"
  /** Waiting `info.delay` ms before the next attempt. */
  | "waiting"
  /** Terminal: a 401 that a fresh token did not cure, or `getToken()` returned nothing. */
  | "unauthorized"
  /** Terminal: a 403 (e.g. a missing role or topic access). */
  | "forbidden"
  /** Terminal: `close()` was called. */
  | "closed";

export interface StateInfo {
  /** Milliseconds until the next attempt (state `waiting`). */
  delay?: number;
  /** Consecutive failed attempts so far. */
  attempt?: number;
  /** The HTTP status of the failed attempt, when there was one. */
  status?: number;
  error?: unknown;
  /** Shared mode: whether this tab holds the connection. */
  role?: "leader" | "follower";
}

export interface BackoffOptions {
  /** First cap of the full-jitter window. Default 500. */
  initialMs?: number;
  /** Largest cap. Default 20 000. */
  maxMs?: number;
  /** A connection open this long resets the backoff. Default 10 000. */
  healthyMs?: number;
}

/** Platform hooks; each defaults to the browser's global. Tests pass fakes. A key present here wins even when undefined. */
export interface Env {
  fetch?: typeof fetch;
  EventSource?: typeof EventSource;
  BroadcastChannel?: typeof BroadcastChannel;
  locks?: LockManager | null;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (id: unknown) => void;
  now?: () => number;
  random?: () => number;
  window?: Pick<EventTarget, "addEventListener" | "removeEventListener"> | null;
  document?: (Pick<EventTarget, "addEventListener" | "removeEventListener"> & { visibilityState: string }) | null;
  baseURI?: string;
  reportError?: (error: unknown) => void;
}

export interface ConnectOptions<T = Record<string, unknown>> {
  /** The stream, e.g. `/v1/events` (resolved against the page's base URL) or an absolute URL. */
  url: string | URL;
  /**
   * The user's JWT. Called before the first connection, when the token is past its `exp`, shortly before `exp`
   * while connected (the stream is renewed and resumed), and once after a 401. Return null/undefined/"" to
   * stop with `unauthorized`; a throw is retried with backoff. Omit it for cookie auth.
   */
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  /** Topics to read besides the caller's own events (`?topics=a,b`). */
  topics?: string[];
  onEvent?: (event: TidingsEvent<T> | StreamFrame) => void;
  onReset?: (info: ResetInfo) => void;
  onStateChange?: (state: ConnectionState, info: StateInfo) => void;
  /**
   * `fetch` (default where available): the token in an `Authorization` header, `Last-Event-ID` on every
   * reconnect. `eventsource`: the browser's EventSource; the token (or a ticket) goes in the URL, statuses are
   * invisible, and only the listed `types` (plus `message`, `reset`, `shutdown`) are received.
   */
  transport?: "fetch" | "eventsource";
  /** EventSource only: the event types to listen for (EventSource delivers named events only by name). */
  types?: string[];
  /** EventSource only: `POST` here with the token for a single-use `?ticket=` per connection (`/v1/stream-tickets`). */
  ticketUrl?: string | URL;
  /** Send cookies (cookie auth, or credentials on a cross-origin hub). */
  withCredentials?: boolean;
  /** One connection for all tabs of this browser (Web Locks, or BroadcastChannel heartbeats). Default false. */
  shared?: boolean;
  /** Tabs with the same key share a connection. Default: the URL and the sorted topics. Add the user id when tabs may be signed in as different users. */
  sharedKey?: string;
  /** Resume after this id on the first connection. */
  lastEventId?: string | null;
  backoff?: BackoffOptions;
  /** Renew the stream this long before the token's `exp` (at most a quarter of its remaining life). Default 30 000. */
  refreshBeforeExpiryMs?: number;
  /**
   * The user's inbox counts whenever they change: from the stream's `inbox.changed` events (which `onEvent` never
   * sees), from every inbox answer that carries counts, and fetched each time the stream (re)opens.
   */
  onInboxChanged?: (counts: InboxCounts) => void;
  /** The inbox routes' base. Default: next to `url` (`/v1/events` and `/v1/admin/events` → `/v1/inbox`). */
  inboxUrl?: string | URL;
  env?: Env;
}

/** Unseen and unread items (archived ones count as neither; a muted scope's only when critical). */
export interface InboxCounts {
  unseen: number;
  unread: number;
  /** Unread items per named category. */
  by_category: Record<string, number>;
}

export interface InboxItem {
  /** The item's id (shared by every recipient of the event); what the marks take. */
  id: string;
  event_id: string;
  type: string;
  title: string;
  body: string;
  url: string | null;
  icon: string | null;
  category: string | null;
  data: Record<string, unknown> | null;
  scope: string | null;
  critical: boolean;
  occurred_at: string;
  created_at: string;
  seen: boolean;
  read: boolean;
  archived: boolean;
}

export interface InboxPage {
  items: InboxItem[];
  /** Pass as `cursor` for the next (older) page; null on the last. */
  next_cursor: string | null;
}

export interface InboxListOptions {
  cursor?: string | null;
  /** 1-100, default 20. */
  limit?: number;
  unread?: boolean;
  category?: string;
  /** Only archived items (default: everything but archived). */
  archived?: boolean;
}

export interface MarkResult {
  mark: "read" | "seen" | "archive";
  /** How many ids were marked (0 for "all"). */
  marked: number;
  /** For "all": the newest item the mark covers. */
  up_to: string | null;
  counts: InboxCounts;
}

/** An answer of the hub that was not 2xx: its JSON `error` as `code`, the HTTP `status`, the offending `field`. */
export interface InboxError extends Error {
  code: string;
  status: number;
  field: string | null;
}

/** The user's inbox over HTTP, with the stream's credentials. Methods reject with an InboxError. */
export interface Inbox {
  readonly url: string;
  list(options?: InboxListOptions): Promise<InboxPage>;
  counts(): Promise<InboxCounts>;
  /** Ids (at most the hub's TIDINGS_INBOX_MAX_IDS_PER_REQUEST), or "all" (optionally up to the newest item shown). */
  markRead(ids: Iterable<string> | "all", options?: { upTo?: string }): Promise<MarkResult>;
  markSeen(ids: Iterable<string> | "all", options?: { upTo?: string }): Promise<MarkResult>;
  archive(ids: Iterable<string> | "all", options?: { upTo?: string }): Promise<MarkResult>;
}

export interface Connection {
  readonly state: ConnectionState;
  /** The id of the last event delivered to this tab. */
  readonly lastEventId: string | null;
  /** `direct` without sharing; otherwise whether this tab holds the shared connection. */
  readonly role: "direct" | "leader" | "follower";
  /** If waiting to reconnect, reconnect now (in shared mode: asks the leader tab). */
  reconnect(): void;
  /** Close this tab's handle; a leader hands the connection to another tab. */
  close(): void;
  /** The user's inbox: list, counts, markRead / markSeen / archive (their counts go to `onInboxChanged`). */
  readonly inbox: Inbox;
}

export declare function connect<T = Record<string, unknown>>(options: ConnectOptions<T>): Connection;

export interface Debounced<A extends unknown[]> {
  (...args: A): void;
  /** Drop a pending trailing call. */
  cancel(): void;
  /** Run a pending trailing call now. */
  flush(): void;
}

/** `fn` at most once per `ms`: at once (leading), and once more after the last call of a burst (trailing). */
export declare function debounce<A extends unknown[]>(
  fn: (...args: A) => unknown,
  ms: number,
  timers?: { setTimeout?: Env["setTimeout"]; clearTimeout?: Env["clearTimeout"] },
): Debounced<A>;

/** The reconnect delay before attempt `attempt`: full jitter over min(maxMs, initialMs·2^attempt), `floorMs` a floor. */
export declare function backoffDelay(
  attempt: number,
  options?: { initialMs?: number; maxMs?: number; floorMs?: number; random?: () => number },
): number;

/** A JWT's `exp` (epoch seconds), or null. Never verifies the signature. */
export declare function tokenExpiry(token: string | null | undefined): number | null;

/** The WHATWG event-stream parser `tidings.js` uses (exported for tests and other transports). */
export declare class SSEParser {
  constructor(handlers?: {
    onEvent?: (frame: { type: string; data: string; id: string; idField: boolean }) => void;
    onComment?: (text: string) => void;
    onRetry?: (ms: number) => void;
  });
  lastEventId: string;
  feed(text: string): void;
  end(): void;
}

export declare class RecentIds {
  constructor(size?: number);
  /** True when `id` was seen before; otherwise remembers it. */
  seen(id: string): boolean;
}

export interface PushOptions {
  /** Base URL of the hub; the defaults below resolve against it. Default `/`. */
  hub?: string | URL;
  /** Default `v1/sw.js`. Must be on the page's origin (serve a copy with `?api=<hub>/v1/` otherwise). */
  swUrl?: string | URL;
  /** Default `v1/webpush/vapid-public-key`. */
  vapidKeyUrl?: string | URL;
  /** Default `v1/devices`. */
  devicesUrl?: string | URL;
  /** Service worker scope (default: the worker's directory). */
  scope?: string;
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  withCredentials?: boolean;
  /** Device topics (`POST /v1/devices` `topics`). */
  topics?: string[];
  /** A label for the device list, e.g. "Firefox on laptop". */
  name?: string;
  /** Register even if this subscription was registered within the last day. */
  force?: boolean;
  /** Every push (alert or silent), forwarded by the service worker to open tabs. */
  onPush?: (payload: WebPushPayload) => void;
  /** A notification click handled by focusing an existing tab. */
  onNotificationClick?: (payload: WebPushPayload & { url: string }) => void;
  onError?: (error: unknown) => void;
  env?: {
    navigator?: Navigator;
    Notification?: typeof Notification | null;
    fetch?: typeof fetch;
    storage?: Pick<Storage, "getItem" | "setItem" | "removeItem"> | null;
    now?: () => number;
    baseURI?: string;
  };
}

/** What the service worker receives (see docs/clients/browser.md). */
export interface WebPushPayload {
  type: string;
  event_id: string;
  /** Present on alerts. `badge` is a count (the Badging API), not an image. */
  notification?: { title: string; body: string; tag?: string; badge?: number; sound?: string };
  /** Custom keys: ids, and `url`/`icon` when the publisher put them in `push.data`. */
  [key: string]: unknown;
}

export interface PushRegistration {
  subscription: PushSubscription;
  /** The hub's device record, or null when this subscription was registered within the last day. */
  device: Record<string, unknown> | null;
  /** Remove the device from the hub and the subscription from the browser. */
  unsubscribe(): Promise<boolean>;
}

/** Errors carry `code`: `unsupported`, `permission_denied`, `no_vapid_key`, `register_failed` (with `status`). */
export declare function registerPush(options?: PushOptions): Promise<PushRegistration>;

export declare function urlBase64ToUint8Array(base64url: string): Uint8Array;
