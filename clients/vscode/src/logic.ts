/**
 * The inline-completion logic of the completiond extension, kept free of the `vscode` module so
 * that it runs (and is tested) under plain Node against the real `completiond lsp` bridge:
 *
 * - the settings and the bridge's command line (`readSettings`, `bridgeCommand`);
 * - when to ask at all (`shouldRequest`) and the request itself (`buildParams`,
 *   `textDocument/inlineCompletion` of LSP 3.18);
 * - the bridge's answer as ghost-text items whose ranges VS Code accepts (`toItems`, `accept`);
 * - the debounce and cancellation policy (`InlineCompletionRequester`): automatic requests wait
 *   `DEBOUNCE_MS` for typing to pause, a newer request for a document drops the older one, and a
 *   cancelled or stale request sends nothing or throws its answer away.
 *
 * Positions are LSP's: zero-based lines, characters in UTF-16 code units (VS Code's units and
 * the bridge's default position encoding).
 */

export const INLINE_COMPLETION_METHOD = "textDocument/inlineCompletion";
/** An automatic request waits this long for the next keystroke before it asks the bridge. */
export const DEBOUNCE_MS = 50;
export const MAX_CHARS_LIMIT = 400; // the daemon's limit (`--max-chars` 1..400)

export interface Position {
  line: number;
  character: number;
}

export interface Range {
  start: Position;
  end: Position;
}

/** `invoked`: the user asked (e.g. Alt+\), no debounce; `automatic`: while typing. */
export type TriggerKind = "invoked" | "automatic";

/** The suggest widget's selected item, which VS Code wants ghost text to extend. */
export interface SelectedCompletionInfo {
  range: Range;
  text: string;
}

/** LSP 3.18 `InlineCompletionParams`. */
export interface InlineCompletionParams {
  textDocument: { uri: string };
  position: Position;
  context: {
    triggerKind: 1 | 2; // InlineCompletionTriggerKind: Invoked = 1, Automatic = 2
    selectedCompletionInfo?: SelectedCompletionInfo;
  };
}

/** One ghost-text suggestion: accepting it replaces `range` (on the cursor's line) with
 * `insertText`. */
export interface Item {
  insertText: string;
  range: Range;
}

/** What the provider knows when VS Code asks: the document's URI as the bridge knows it (the
 * one sent in `didOpen`), the cursor and the text of its line. */
export interface Request {
  uri: string;
  position: Position;
  lineText: string;
  triggerKind: TriggerKind;
  selectedCompletionInfo?: SelectedCompletionInfo;
}

// --- Settings ------------------------------------------------------------------------------------

export interface Settings {
  enable: boolean;
  command: string;
  args: string[];
  maxChars: number;
  minConfidence: number;
  startDaemon: boolean;
}

export const DEFAULT_SETTINGS: Readonly<Settings> = Object.freeze({
  enable: true,
  command: "completiond",
  args: ["lsp"],
  maxChars: 80,
  minConfidence: 0.6,
  startDaemon: true,
});

/** The `completiond.*` settings, read through `get` (e.g. a `WorkspaceConfiguration`'s). A value
 * of the wrong type falls back to its default and numbers are clamped to the bridge's ranges, so
 * that a bad setting never makes the bridge refuse to start. */
export function readSettings(get: (key: string) => unknown): Settings {
  const enable = get("enable");
  const command = get("command");
  const args = get("args");
  const maxChars = get("maxChars");
  const minConfidence = get("minConfidence");
  const startDaemon = get("startDaemon");
  const number = (value: unknown): value is number =>
    typeof value === "number" && Number.isFinite(value);
  return {
    enable: typeof enable === "boolean" ? enable : DEFAULT_SETTINGS.enable,
    command:
      typeof command === "string" && command.trim() !== ""
        ? command.trim()
        : DEFAULT_SETTINGS.command,
    args:
      Array.isArray(args) && args.every((arg) => typeof arg === "string")
        ? [...args]
        : [...DEFAULT_SETTINGS.args],
    maxChars: number(maxChars)
      ? Math.min(MAX_CHARS_LIMIT, Math.max(1, Math.round(maxChars)))
      : DEFAULT_SETTINGS.maxChars,
    minConfidence: number(minConfidence)
      ? Math.min(1, Math.max(0, minConfidence))
      : DEFAULT_SETTINGS.minConfidence,
    startDaemon:
      typeof startDaemon === "boolean" ? startDaemon : DEFAULT_SETTINGS.startDaemon,
  };
}

/** The bridge's command line: `command args... --max-chars N --min-confidence C`, then
 * `--no-start` when the bridge must not start daemons, with `${workspaceFolder}` replaced by
 * `folder` in the command and the arguments. */
export function bridgeCommand(
  settings: Settings,
  folder?: string,
): { command: string; args: string[] } {
  const expand = (value: string): string =>
    folder === undefined ? value : value.split("${workspaceFolder}").join(folder);
  return {
    command: expand(settings.command),
    args: [
      ...settings.args.map(expand),
      "--max-chars",
      String(settings.maxChars),
      "--min-confidence",
      String(settings.minConfidence),
      ...(settings.startDaemon ? [] : ["--no-start"]),
    ],
  };
}

// --- Requests ------------------------------------------------------------------------------------

const WORD_CHARACTER = /^[\p{L}\p{N}_]/u;

/** The cursor at UTF-16 `offset` of `text`: its position and its line's text (line breaks are
 * LSP's: `\n`, `\r\n` and `\r`). */
export function cursorAt(text: string, offset: number): { position: Position; lineText: string } {
  if (!Number.isInteger(offset) || offset < 0 || offset > text.length) {
    throw new RangeError(`offset ${offset} is outside the text (0..${text.length})`);
  }
  let line = 0;
  let lineStart = 0;
  for (let i = 0; i < offset; i++) {
    const ch = text.charCodeAt(i);
    if (ch === 0x0a || (ch === 0x0d && text.charCodeAt(i + 1) !== 0x0a)) {
      line++;
      lineStart = i + 1;
    }
  }
  const rest = text.slice(lineStart);
  const lineEnd = rest.search(/[\r\n]/);
  return {
    position: { line, character: offset - lineStart },
    lineText: lineEnd < 0 ? rest : rest.slice(0, lineEnd),
  };
}

/** Whether asking the bridge can give anything: not past the end of the line, not while the
 * suggest widget has an item selected (ghost text would have to extend that item), and not in
 * the middle of a word (the bridge never splits one). */
export function shouldRequest(request: Request): boolean {
  const { position, lineText } = request;
  if (position.character < 0 || position.character > lineText.length) {
    return false;
  }
  if (request.selectedCompletionInfo !== undefined) {
    return false;
  }
  return !WORD_CHARACTER.test(lineText.slice(position.character));
}

export function buildParams(request: Request): InlineCompletionParams {
  const params: InlineCompletionParams = {
    textDocument: { uri: request.uri },
    position: { line: request.position.line, character: request.position.character },
    context: { triggerKind: request.triggerKind === "invoked" ? 1 : 2 },
  };
  if (request.selectedCompletionInfo !== undefined) {
    params.context.selectedCompletionInfo = request.selectedCompletionInfo;
  }
  return params;
}

// --- Answers -------------------------------------------------------------------------------------

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

function asPosition(value: unknown): Position | undefined {
  if (!isObject(value)) {
    return undefined;
  }
  const { line, character } = value;
  return Number.isInteger(line) && Number.isInteger(character)
    ? { line: line as number, character: character as number }
    : undefined;
}

function asRange(value: unknown): Range | undefined {
  if (!isObject(value)) {
    return undefined;
  }
  const start = asPosition(value.start);
  const end = asPosition(value.end);
  return start && end ? { start, end } : undefined;
}

/** The line once `item` is accepted. */
export function accept(lineText: string, item: Item): string {
  return (
    lineText.slice(0, item.range.start.character) +
    item.insertText +
    lineText.slice(item.range.end.character)
  );
}

/**
 * The bridge's answer to `textDocument/inlineCompletion` (an `InlineCompletionList`, an array of
 * `InlineCompletionItem`s, or null) as items for VS Code, best first.
 *
 * An item without a range inserts at the cursor. A range must lie on the cursor's line and
 * contain the cursor, e.g. `respond(║)` + `value)` replacing the auto-inserted `)` (VS Code shows
 * `value` as ghost text before the `)`, and accepting leaves one `)`); what it replaces before
 * the cursor must begin the inserted text, or VS Code would not show it. Snippets, items that
 * change nothing and repeats are left out, and so is an item's `command` (the bridge's
 * `completiond.accepted`): the bridge tells acceptance from the edits that follow, so running it
 * too would count nothing more.
 */
export function toItems(answer: unknown, position: Position, lineText: string): Item[] {
  const raw = Array.isArray(answer)
    ? answer
    : isObject(answer) && Array.isArray(answer.items)
      ? answer.items
      : [];
  const items: Item[] = [];
  const seen = new Set<string>();
  for (const candidate of raw) {
    if (!isObject(candidate) || typeof candidate.insertText !== "string") {
      continue; // a snippet (`StringValue`) or garbage
    }
    const insertText = candidate.insertText;
    const range =
      candidate.range === undefined || candidate.range === null
        ? { start: { ...position }, end: { ...position } }
        : asRange(candidate.range);
    if (
      range === undefined ||
      range.start.line !== position.line ||
      range.end.line !== position.line ||
      range.start.character < 0 ||
      range.start.character > position.character ||
      range.end.character < position.character ||
      range.end.character > lineText.length ||
      !insertText.startsWith(lineText.slice(range.start.character, position.character)) ||
      /[\r\n]/.test(insertText)
    ) {
      continue;
    }
    const item = { insertText, range };
    const key = JSON.stringify(item);
    if (accept(lineText, item) === lineText || seen.has(key)) {
      continue;
    }
    seen.add(key);
    items.push(item);
  }
  return items;
}

// --- Debounce and cancellation -------------------------------------------------------------------

export interface Disposable {
  dispose(): void;
}

/** The part of a cancellation token the policy uses: VS Code's and vscode-jsonrpc's both fit. */
export interface CancellationToken {
  readonly isCancellationRequested: boolean;
  onCancellationRequested(listener: (e: unknown) => unknown): Disposable;
}

/** Sends one request to the bridge (e.g. `LanguageClient.sendRequest`); cancelling `token`
 * cancels it on the bridge too (`$/cancelRequest`). */
export type Send = (
  method: string,
  params: InlineCompletionParams,
  token: CancellationToken,
) => Promise<unknown>;

/** Resolves true after `ms`, or false as soon as `token` is cancelled. */
export function pause(ms: number, token: CancellationToken): Promise<boolean> {
  if (token.isCancellationRequested) {
    return Promise.resolve(false);
  }
  if (ms <= 0) {
    return Promise.resolve(true);
  }
  return new Promise((resolve) => {
    const listener = token.onCancellationRequested(() => {
      clearTimeout(timer);
      listener.dispose();
      resolve(false);
    });
    const timer = setTimeout(() => {
      listener.dispose();
      resolve(!token.isCancellationRequested);
    }, ms);
  });
}

// JSON-RPC / LSP codes of answers that are no failure: the request was cancelled, the document
// changed under it, or the bridge is not running (starting, restarting, or failed to start:
// the language client reports that itself).
const QUIET_ERROR_CODES = new Set([-32800, -32801, -32802, -32097, -32096]);

function isQuiet(error: unknown): boolean {
  return isObject(error) && typeof error.code === "number" && QUIET_ERROR_CODES.has(error.code);
}

export interface RequesterOptions {
  /** How long an automatic request waits for typing to pause (default `DEBOUNCE_MS`). */
  debounceMs?: number;
  /** Told of a failed request (not of cancellations). */
  onError?: (error: unknown) => void;
}

/**
 * Asks the bridge for inline completions with the extension's policy: nothing is sent when
 * `shouldRequest` says no; an automatic request first waits `debounceMs` and sends nothing when it
 * is cancelled meanwhile or a newer request for the same document came; an answer to a request
 * that was cancelled, superseded or made stale (`isStale`, e.g. the document's version changed)
 * is thrown away. Every outcome but a good answer is `[]`: the editor shows nothing.
 */
export class InlineCompletionRequester {
  private readonly latest = new Map<string, number>(); // document URI -> newest request
  private counter = 0;

  constructor(
    private readonly send: Send,
    private readonly options: RequesterOptions = {},
  ) {}

  /** Requests for documents still pending (for tests: none once all have settled). */
  get pending(): number {
    return this.latest.size;
  }

  async provide(
    request: Request,
    token: CancellationToken,
    isStale: () => boolean = () => false,
  ): Promise<Item[]> {
    if (!shouldRequest(request)) {
      return [];
    }
    const id = ++this.counter;
    this.latest.set(request.uri, id);
    const dropped = (): boolean =>
      token.isCancellationRequested || this.latest.get(request.uri) !== id || isStale();
    try {
      const wait =
        request.triggerKind === "automatic" ? (this.options.debounceMs ?? DEBOUNCE_MS) : 0;
      if (!(await pause(wait, token)) || dropped()) {
        return [];
      }
      let answer: unknown;
      try {
        answer = await this.send(INLINE_COMPLETION_METHOD, buildParams(request), token);
      } catch (error) {
        if (!dropped() && !isQuiet(error)) {
          this.options.onError?.(error);
        }
        return [];
      }
      return dropped() ? [] : toItems(answer, request.position, request.lineText);
    } finally {
      if (this.latest.get(request.uri) === id) {
        this.latest.delete(request.uri);
      }
    }
  }
}
