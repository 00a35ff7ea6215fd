// The provider logic on its own: no VS Code, no bridge, no daemon.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  accept,
  bridgeCommand,
  buildParams,
  type CancellationToken,
  cursorAt,
  DEFAULT_SETTINGS,
  type Disposable,
  InlineCompletionRequester,
  type InlineCompletionParams,
  readSettings,
  type Request,
  shouldRequest,
  toItems,
} from "../logic";

/** A cancellation token with a `cancel()`, in the shape VS Code and vscode-jsonrpc give. */
class Token implements CancellationToken {
  isCancellationRequested = false;
  private readonly listeners = new Set<(e: unknown) => unknown>();

  onCancellationRequested(listener: (e: unknown) => unknown): Disposable {
    this.listeners.add(listener);
    return { dispose: () => this.listeners.delete(listener) };
  }

  cancel(): void {
    this.isCancellationRequested = true;
    for (const listener of [...this.listeners]) {
      listener(undefined);
    }
  }

  get listening(): number {
    return this.listeners.size;
  }
}

const at = (line: number, character: number) => ({ line, character });
const span = (line: number, start: number, end: number) => ({
  start: at(line, start),
  end: at(line, end),
});

function request(lineText: string, character: number, extra: Partial<Request> = {}): Request {
  return {
    uri: "file:///repo/a.py",
    position: at(3, character),
    lineText,
    triggerKind: "automatic",
    ...extra,
  };
}

describe("ranges", () => {
  test("an auto-inserted `)` is replaced, so accepting leaves one", () => {
    // The bridge's answer for `    return respond(║)`: insert `value)` over the `)`.
    const line = "    return respond()";
    const cursor = line.length - 1;
    const answer = { items: [{ insertText: "value)", range: span(3, cursor, cursor + 1) }] };
    const items = toItems(answer, at(3, cursor), line);
    assert.deepEqual(items, [{ insertText: "value)", range: span(3, cursor, cursor + 1) }]);
    assert.equal(accept(line, items[0]), "    return respond(value)");
  });

  test("an item without a range inserts at the cursor; an array answer is read too", () => {
    const items = toItems([{ insertText: "spond(value)" }], at(3, 13), "    return re");
    assert.deepEqual(items, [{ insertText: "spond(value)", range: span(3, 13, 13) }]);
    assert.equal(accept("    return re", items[0]), "    return respond(value)");
  });

  test("a range may start before the cursor when it replaces what the item begins with", () => {
    const line = "    return re";
    const kept = toItems(
      [{ insertText: "respond(value)", range: span(3, 11, 13) }],
      at(3, 13),
      line,
    );
    assert.equal(accept(line, kept[0]), "    return respond(value)");
    const wrong = toItems([{ insertText: "xyz", range: span(3, 11, 13) }], at(3, 13), line);
    assert.deepEqual(wrong, []);
  });

  test("items VS Code could not show, or that change nothing, are left out", () => {
    const line = "    f(x)";
    const position = at(3, 7); // before the ")"
    const answer = {
      items: [
        { insertText: "y", range: span(2, 7, 7) }, // another line
        { insertText: "y", range: { start: at(3, 7), end: at(4, 0) } }, // across lines
        { insertText: "y", range: span(3, 8, 8) }, // not containing the cursor
        { insertText: "y", range: span(3, 7, 20) }, // past the end of the line
        { insertText: "", range: span(3, 7, 7) }, // empty
        { insertText: ")", range: span(3, 7, 8) }, // the line as it is
        { insertText: { kind: "snippet", value: "y$0" } }, // a snippet
        { insertText: "a\nb" }, // a line break
        { insertText: ", y)", range: span(3, 7, 8) },
        { insertText: ", y)", range: span(3, 7, 8) }, // a repeat
        "garbage",
      ],
    };
    const items = toItems(answer, position, line);
    assert.deepEqual(items, [{ insertText: ", y)", range: span(3, 7, 8) }]);
    assert.equal(accept(line, items[0]), "    f(x, y)");
    assert.deepEqual(toItems(null, position, line), []);
    assert.deepEqual(toItems({ items: null }, position, line), []);
  });
});

describe("requests", () => {
  test("the cursor's position counts UTF-16 units and LSP's three line breaks", () => {
    const text = "a\r\nb\rc\n𝔸é = x";
    assert.deepEqual(cursorAt(text, text.length), { position: at(3, 7), lineText: "𝔸é = x" });
    assert.deepEqual(cursorAt(text, 1), { position: at(0, 1), lineText: "a" });
    assert.deepEqual(cursorAt(text, 4), { position: at(1, 1), lineText: "b" });
    assert.deepEqual(cursorAt(text, 5), { position: at(2, 0), lineText: "c" });
    assert.throws(() => cursorAt(text, text.length + 1), RangeError);
  });

  test("params are LSP 3.18's, with its trigger kinds", () => {
    const params = buildParams(request("    return re", 13));
    assert.deepEqual(params, {
      textDocument: { uri: "file:///repo/a.py" },
      position: at(3, 13),
      context: { triggerKind: 2 },
    });
    assert.equal(buildParams(request("x", 1, { triggerKind: "invoked" })).context.triggerKind, 1);
  });

  test("nothing is asked mid-word, past the line or over a suggest-widget item", () => {
    assert.equal(shouldRequest(request("    return re", 13)), true);
    assert.equal(shouldRequest(request("foo(x)", 5)), true); // before the ")"
    assert.equal(shouldRequest(request("foo(x)", 4)), false); // before the "x"
    assert.equal(shouldRequest(request("foo(éa)", 4)), false);
    assert.equal(shouldRequest(request("foo", 4)), false);
    const selected = { range: span(3, 0, 3), text: "foobar" };
    assert.equal(shouldRequest(request("foo", 3, { selectedCompletionInfo: selected })), false);
  });
});

describe("settings", () => {
  test("defaults give `completiond lsp` with the daemon's default limits", () => {
    const settings = readSettings(() => undefined);
    assert.deepEqual(settings, DEFAULT_SETTINGS);
    assert.deepEqual(bridgeCommand(settings), {
      command: "completiond",
      args: ["lsp", "--max-chars", "80", "--min-confidence", "0.6"],
    });
  });

  test("values are clamped to the bridge's ranges; wrong types fall back to defaults", () => {
    const values: Record<string, unknown> = {
      enable: "yes",
      command: "${workspaceFolder}/.venv/bin/completiond",
      args: ["lsp", "--socket", "${workspaceFolder}/d.sock"],
      maxChars: 1000.4,
      minConfidence: -1,
    };
    const settings = readSettings((key) => values[key]);
    assert.equal(settings.enable, true);
    assert.deepEqual(bridgeCommand(settings, "/src/p"), {
      command: "/src/p/.venv/bin/completiond",
      args: ["lsp", "--socket", "/src/p/d.sock", "--max-chars", "400", "--min-confidence", "0"],
    });
    const other = readSettings(
      (key) => ({ args: [1], maxChars: 0.2, minConfidence: 0.35, startDaemon: false })[key],
    );
    assert.deepEqual(bridgeCommand(other).args, [
      "lsp",
      "--max-chars",
      "1",
      "--min-confidence",
      "0.35",
      "--no-start",
    ]);
  });
});

describe("debounce and cancellation", () => {
  const answer = { items: [{ insertText: "spond(value)" }] };

  function recorder(
    reply: (params: InlineCompletionParams) => Promise<unknown> = async () => answer,
  ) {
    const sent: InlineCompletionParams[] = [];
    const requester = new InlineCompletionRequester(
      async (method, params) => {
        assert.equal(method, "textDocument/inlineCompletion");
        sent.push(params);
        return reply(params);
      },
      { debounceMs: 30 },
    );
    return { sent, requester };
  }

  test("an automatic request waits for typing to pause, an invoked one does not", async () => {
    const { sent, requester } = recorder();
    const token = new Token();
    const automatic = requester.provide(request("    return re", 13), token);
    await new Promise((resolve) => setTimeout(resolve, 5));
    assert.equal(sent.length, 0);
    assert.equal((await automatic).length, 1);
    assert.equal(sent.length, 1);
    const invoked = requester.provide(
      request("    return re", 13, { triggerKind: "invoked" }),
      token,
    );
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(sent.length, 2);
    assert.equal((await invoked)[0].insertText, "spond(value)");
    assert.equal(token.listening, 0);
    assert.equal(requester.pending, 0);
  });

  test("cancelled while waiting: nothing is sent", async () => {
    const { sent, requester } = recorder();
    const token = new Token();
    const pending = requester.provide(request("    return re", 13), token);
    token.cancel();
    assert.deepEqual(await pending, []);
    assert.equal(sent.length, 0);
    assert.equal(requester.pending, 0);
  });

  test("a newer request for the document supersedes the older one", async () => {
    const { sent, requester } = recorder();
    const older = requester.provide(request("    return r", 12), new Token());
    const newer = requester.provide(request("    return re", 13), new Token());
    const other = requester.provide(request("x = ", 4, { uri: "file:///repo/b.py" }), new Token());
    assert.deepEqual(await older, []);
    assert.equal((await newer).length, 1);
    assert.equal((await other).length, 1);
    assert.deepEqual(
      sent.map((params) => [params.textDocument.uri, params.position.character]),
      [
        ["file:///repo/a.py", 13],
        ["file:///repo/b.py", 4],
      ],
    );
  });

  test("an answer that comes after a cancel, a newer request or an edit is dropped", async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const { requester } = recorder(async () => {
      await gate;
      return answer;
    });
    const cancelled = new Token();
    const first = requester.provide(
      request("    return re", 13, { triggerKind: "invoked" }),
      cancelled,
    );
    await new Promise((resolve) => setImmediate(resolve));
    cancelled.cancel();
    let edited = false;
    const stale = requester.provide(
      request("    return re", 13, { triggerKind: "invoked", uri: "file:///repo/c.py" }),
      new Token(),
      () => edited,
    );
    await new Promise((resolve) => setImmediate(resolve));
    edited = true;
    release();
    assert.deepEqual(await first, []);
    assert.deepEqual(await stale, []);
  });

  test("failures are empty answers; only real failures are reported", async () => {
    const errors: unknown[] = [];
    const failures = [{ code: -32800, message: "cancelled" }, new Error("boom")];
    const requester = new InlineCompletionRequester(
      async () => {
        throw failures.shift();
      },
      { debounceMs: 0, onError: (error) => errors.push(error) },
    );
    assert.deepEqual(await requester.provide(request("x = ", 4), new Token()), []);
    assert.deepEqual(await requester.provide(request("x = ", 4), new Token()), []);
    assert.equal(errors.length, 1);
    assert.equal((errors[0] as Error).message, "boom");
  });
});
