// The provider logic against the real `completiond lsp` bridge and a real daemon, over stdio as
// VS Code's language client speaks to it. tests/test_vscode.py sets the environment:
//   COMPLETIOND_TEST_LSP_CMD  the bridge's command line, a JSON array (e.g. [python, -m, ..., lsp])
//   COMPLETIOND_TEST_SOCKET   the daemon's Unix socket
//   COMPLETIOND_TEST_REPO     the repository the daemon's model was trained on
// Without them these tests are skipped.

import assert from "node:assert/strict";
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import { pathToFileURL } from "node:url";

import {
  CancellationTokenSource,
  createMessageConnection,
  type MessageConnection,
  StreamMessageReader,
  StreamMessageWriter,
} from "vscode-jsonrpc/node";

import {
  accept,
  bridgeCommand,
  cursorAt,
  DEFAULT_SETTINGS,
  InlineCompletionRequester,
  type Request,
  type Send,
} from "../logic";

const WAIT_MS = 30_000; // the longest one message may take; a cold first completion included

const { COMPLETIOND_TEST_LSP_CMD, COMPLETIOND_TEST_SOCKET, COMPLETIOND_TEST_REPO } = process.env;
const skip =
  COMPLETIOND_TEST_LSP_CMD && COMPLETIOND_TEST_SOCKET && COMPLETIOND_TEST_REPO
    ? false
    : "needs a daemon: run through tests/test_vscode.py (COMPLETIOND_TEST_LSP_CMD, _SOCKET, _REPO)";

// What the fixture model completes: `return re` + `spond(value)`.
const HANDLER =
  'def handler_999(request):\n    value = request.get("key_999")\n' +
  "    if value is None:\n        return respond(None)\n    return re";

/** The bridge as a child process, spoken to with vscode-jsonrpc; every wait is bounded. */
class Bridge {
  readonly stderr: string[] = [];
  readonly exited: Promise<number | null>;
  readonly connection: MessageConnection;

  constructor(readonly proc: ChildProcessWithoutNullStreams) {
    proc.stderr.setEncoding("utf8").on("data", (chunk: string) => this.stderr.push(chunk));
    this.exited = new Promise((resolve) => proc.on("exit", (code) => resolve(code)));
    this.connection = createMessageConnection(
      new StreamMessageReader(proc.stdout),
      new StreamMessageWriter(proc.stdin),
    );
    this.connection.onNotification(() => undefined); // window/logMessage and the like
    this.connection.onRequest(() => null); // e.g. client/registerCapability: accepted
    this.connection.listen();
  }

  static start(repo: string): Bridge {
    const [command, ...args] = JSON.parse(COMPLETIOND_TEST_LSP_CMD as string) as string[];
    // The extension's own command line: `args... --max-chars N --min-confidence C`.
    const line = bridgeCommand({
      ...DEFAULT_SETTINGS,
      minConfidence: 0, // the tiny test model is rarely sure: every suggestion, to see them
      command,
      args: [...args, "--socket", COMPLETIOND_TEST_SOCKET as string, "--repo", repo],
    });
    return new Bridge(spawn(line.command, line.args, { cwd: repo, stdio: "pipe" }));
  }

  log(): string {
    return `\n--- bridge stderr:\n${this.stderr.join("")}`;
  }

  /** `promise`, or a failure naming `what` (with the bridge's stderr) after WAIT_MS. */
  async within<T>(promise: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${what}: no answer in ${WAIT_MS} ms${this.log()}`)),
        WAIT_MS,
      );
    });
    try {
      return await Promise.race([promise, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  kill(): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill("SIGKILL");
    }
    this.connection.dispose();
  }
}

describe(
  "the provider logic against the real bridge and daemon",
  { skip, timeout: 4 * WAIT_MS },
  () => {
    const repo = COMPLETIOND_TEST_REPO ?? "";
    const uri = pathToFileURL(path.join(repo, "new_handlers.py")).href;
    let bridge: Bridge;
    let capabilities: Record<string, unknown>;
    let sent = 0;
    let requester: InlineCompletionRequester;
    const errors: unknown[] = [];

    before(async () => {
      bridge = Bridge.start(repo);
      const send: Send = (method, params, token) => {
        sent++;
        return bridge.within(bridge.connection.sendRequest(method, params, token), method);
      };
      requester = new InlineCompletionRequester(send, { onError: (error) => errors.push(error) });
      const result = await bridge.within(
        bridge.connection.sendRequest("initialize", {
          processId: process.pid,
          rootUri: pathToFileURL(repo).href,
          capabilities: { textDocument: { inlineCompletion: {}, synchronization: {} } },
          workspaceFolders: null,
          // The name the daemon counts feedback under (tests/test_vscode.py reads it).
          clientInfo: { name: "completiond bridge test" },
        }),
        "initialize",
      );
      capabilities = (result as { capabilities: Record<string, unknown> }).capabilities;
      await bridge.connection.sendNotification("initialized", {});
    });

    after(() => bridge?.kill());

    function at(text: string, offset: number): Request {
      return { uri, ...cursorAt(text, offset), triggerKind: "automatic" };
    }

    test("the bridge offers inline completion", () => {
      assert.ok(capabilities.inlineCompletionProvider, JSON.stringify(capabilities));
    });

    test("completes the rest of the line at the cursor", async () => {
      await bridge.connection.sendNotification("textDocument/didOpen", {
        textDocument: { uri, languageId: "python", version: 1, text: HANDLER },
      });
      const request = at(HANDLER, HANDLER.length);
      assert.deepEqual(request.position, { line: 4, character: "    return re".length });
      const items = await requester.provide(request, new CancellationTokenSource().token);
      assert.ok(items.length > 0, `no items${bridge.log()}`);
      assert.deepEqual(items[0], {
        insertText: "spond(value)",
        range: { start: request.position, end: request.position },
      });
      assert.equal(accept(request.lineText, items[0]), "    return respond(value)");
    });

    test("accepting an item is the edit that the bridge counts as accepted", async () => {
      // Asked again at the same place: the same suggestion, which the bridge counts once.
      const request = at(HANDLER, HANDLER.length);
      const [item] = await requester.provide(request, new CancellationTokenSource().token);
      assert.ok(item !== undefined, `no items${bridge.log()}`);
      assert.ok(!("command" in item), "VS Code would run the command as well");
      // Tab: VS Code replaces the item's range with its text and tells the bridge so.
      await bridge.connection.sendNotification("textDocument/didChange", {
        textDocument: { uri, version: 2 },
        contentChanges: [{ range: item.range, text: item.insertText }],
      });
      // Back to `return re` for the tests that follow.
      const { start } = item.range;
      const end = { line: start.line, character: start.character + item.insertText.length };
      await bridge.connection.sendNotification("textDocument/didChange", {
        textDocument: { uri, version: 3 },
        contentChanges: [{ range: { start, end }, text: "" }],
      });
    });

    test("inside an auto-inserted `)`, accepting leaves one `)`", async () => {
      // The editor typed "spond(" and auto-inserted ")": `    return respond(║)`.
      const end = { line: 4, character: "    return re".length };
      await bridge.connection.sendNotification("textDocument/didChange", {
        textDocument: { uri, version: 4 },
        contentChanges: [{ range: { start: end, end }, text: "spond()" }],
      });
      const text = `${HANDLER}spond()`;
      const request = at(text, text.length - 1);
      const items = await requester.provide(request, new CancellationTokenSource().token);
      assert.ok(items.length > 0, `no completion inside the auto-inserted brackets${bridge.log()}`);
      assert.equal(accept(request.lineText, items[0]), "    return respond(value)");
      // Back to `return re` for the tests that follow.
      await bridge.connection.sendNotification("textDocument/didChange", {
        textDocument: { uri, version: 5 },
        contentChanges: [
          { range: { start: end, end: { line: 4, character: end.character + 7 } }, text: "" },
        ],
      });
    });

    test("a cancelled request sends nothing or drops its answer; then all is well", async () => {
      const request = at(HANDLER, HANDLER.length);
      const sentBefore = sent;
      const waiting = new CancellationTokenSource();
      const debounced = requester.provide(request, waiting.token);
      waiting.cancel(); // while it waits for typing to pause
      assert.deepEqual(await debounced, []);
      assert.equal(sent, sentBefore, "a request cancelled while debouncing was sent");

      // Cancelled once on the wire: the bridge answers RequestCancelled (or, if it was quicker,
      // the completion), and either way the editor gets nothing.
      const inFlight = new CancellationTokenSource();
      const cancelling = new InlineCompletionRequester(
        (method, params, token) => {
          const answer = bridge.connection.sendRequest(method, params, token);
          inFlight.cancel();
          return bridge.within(answer, method);
        },
        { onError: (error) => errors.push(error) },
      );
      assert.deepEqual(await cancelling.provide(request, inFlight.token), []);

      const items = await requester.provide(request, new CancellationTokenSource().token);
      assert.equal(items[0]?.insertText, "spond(value)", bridge.log());
      assert.deepEqual(errors, []);
      assert.equal(requester.pending, 0);
    });

    test("closes cleanly: shutdown, exit, status 0", async () => {
      await bridge.connection.sendNotification("textDocument/didClose", { textDocument: { uri } });
      assert.equal(
        await bridge.within(bridge.connection.sendRequest("shutdown"), "shutdown"),
        null,
      );
      await bridge.connection.sendNotification("exit");
      assert.equal(await bridge.within(bridge.exited, "exit"), 0);
      assert.doesNotMatch(bridge.log(), /Traceback/);
    });
  },
);
