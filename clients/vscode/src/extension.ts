/**
 * The completiond extension: ghost-text completions from the repository's daemon.
 *
 * Each workspace folder gets its own `completiond lsp` bridge (a language client over stdio,
 * started in the folder so that it finds that repository's daemon) once a file of the folder is
 * open. The client keeps the bridge's copy of the open documents in sync; an inline-completion
 * provider asks it `textDocument/inlineCompletion` through `logic.ts`, which holds everything that
 * does not need VS Code (and is tested without it).
 *
 * Feedback: the bridge follows each suggestion it shows through the edits VS Code sends it
 * (`didChange`) and counts it accepted, partially accepted (a word at a time) or dismissed. So
 * the items carry no command: running the bridge's `completiond.accepted` as well would count
 * nothing more, and the command is not registered at all (see `BridgeClient`).
 */

import * as vscode from "vscode";
import {
  type DynamicFeature,
  ExecuteCommandRequest,
  LanguageClient,
  type LanguageClientOptions,
  type ServerOptions,
  type StaticFeature,
} from "vscode-languageclient/node";

import {
  bridgeCommand,
  InlineCompletionRequester,
  readSettings,
  type Range,
  type Settings,
} from "./logic";

const SECTION = "completiond";

interface Bridge {
  client: LanguageClient;
  requester: InlineCompletionRequester;
}

function settingsFor(folder: vscode.WorkspaceFolder): Settings {
  const configuration = vscode.workspace.getConfiguration(SECTION, folder.uri);
  return readSettings((key) => configuration.get(key));
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * A language client without the `workspace/executeCommand` feature, which would register the
 * bridge's commands with VS Code: commands are global there, so the second folder's client would
 * fail to start ("command 'completiond.accepted' already exists"), and VS Code needs none of them.
 */
class BridgeClient extends LanguageClient {
  override registerFeature(feature: StaticFeature | DynamicFeature<unknown>): void {
    if (
      "registrationType" in feature &&
      feature.registrationType.method === ExecuteCommandRequest.method
    ) {
      return;
    }
    super.registerFeature(feature);
  }
}

/** The bridges, one per workspace folder, started on first use. */
class Bridges implements vscode.Disposable {
  private readonly running = new Map<string, Bridge>(); // by the folder's URI

  constructor(private readonly output: vscode.OutputChannel) {}

  /** The bridge serving `document` (started now if need be), or none: not a file in a workspace
   * folder, or completiond is disabled there. */
  forDocument(document: vscode.TextDocument): Bridge | undefined {
    if (document.uri.scheme !== "file") {
      return undefined;
    }
    const folder = vscode.workspace.getWorkspaceFolder(document.uri);
    return folder === undefined ? undefined : this.start(folder);
  }

  private start(folder: vscode.WorkspaceFolder): Bridge | undefined {
    const key = folder.uri.toString();
    const existing = this.running.get(key);
    if (existing !== undefined) {
      return existing;
    }
    const settings = settingsFor(folder);
    if (!settings.enable) {
      return undefined;
    }
    const { command, args } = bridgeCommand(settings, folder.uri.fsPath);
    const serverOptions: ServerOptions = { command, args, options: { cwd: folder.uri.fsPath } };
    const clientOptions: LanguageClientOptions = {
      // The folder's files only: another folder may be another repository, with its own daemon.
      // The client hands a filter's pattern to VS Code's `languages.match` as it is, which takes
      // a RelativePattern (exact for any folder path, unlike an absolute glob string); the
      // protocol's 3.17 typings only know strings.
      documentSelector: [
        {
          scheme: "file",
          pattern: new vscode.RelativePattern(folder, "**/*") as unknown as string,
        },
      ],
      workspaceFolder: folder,
      outputChannel: this.output,
      middleware: {
        // Ghost text only: the bridge's list completions would repeat it in the suggest widget.
        provideCompletionItem: () => undefined,
      },
    };
    const client = new BridgeClient(
      "completiond",
      `completiond (${folder.name})`,
      serverOptions,
      clientOptions,
    );
    const requester = new InlineCompletionRequester(
      // Nothing is asked before the bridge runs: a request sent while the client starts would
      // reach the bridge before the `didOpen` of the documents already open.
      async (method, params, token) =>
        client.isRunning() ? client.sendRequest(method, params, token) : null,
      {
        onError: (error) =>
          this.output.appendLine(`completiond: inline completion failed: ${describe(error)}`),
      },
    );
    const bridge = { client, requester };
    this.running.set(key, bridge);
    this.output.appendLine(
      `completiond: starting ${[command, ...args].join(" ")} in ${folder.uri.fsPath}`,
    );
    client.start().catch((error: unknown) => {
      this.output.appendLine(
        `completiond: could not start \`${command}\` (set completiond.command): ${describe(error)}`,
      );
    });
    return bridge;
  }

  async stop(key: string): Promise<void> {
    const bridge = this.running.get(key);
    this.running.delete(key);
    if (bridge !== undefined && bridge.client.needsStop()) {
      await bridge.client.stop().catch(() => undefined);
    }
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.running.keys()].map((key) => this.stop(key)));
  }

  /** After a settings change: the folders whose `completiond.*` settings changed start afresh
   * (on their next use) with the new command line. */
  async reconfigure(event: vscode.ConfigurationChangeEvent): Promise<void> {
    const changed = [...this.running.keys()].filter((key) =>
      event.affectsConfiguration(SECTION, vscode.Uri.parse(key)),
    );
    await Promise.all(changed.map((key) => this.stop(key)));
    this.startForOpenDocuments();
  }

  async restartAll(): Promise<void> {
    await this.stopAll();
    this.startForOpenDocuments();
  }

  startForOpenDocuments(): void {
    for (const document of vscode.workspace.textDocuments) {
      this.forDocument(document);
    }
  }

  dispose(): void {
    void this.stopAll();
  }
}

function toLspRange(range: vscode.Range): Range {
  return {
    start: { line: range.start.line, character: range.start.character },
    end: { line: range.end.line, character: range.end.character },
  };
}

class Provider implements vscode.InlineCompletionItemProvider {
  constructor(private readonly bridges: Bridges) {}

  async provideInlineCompletionItems(
    document: vscode.TextDocument,
    position: vscode.Position,
    context: vscode.InlineCompletionContext,
    token: vscode.CancellationToken,
  ): Promise<vscode.InlineCompletionItem[] | undefined> {
    const bridge = this.bridges.forDocument(document);
    if (bridge === undefined) {
      return undefined;
    }
    const version = document.version;
    const selected = context.selectedCompletionInfo;
    const items = await bridge.requester.provide(
      {
        uri: bridge.client.code2ProtocolConverter.asUri(document.uri),
        position: { line: position.line, character: position.character },
        lineText: document.lineAt(position.line).text,
        triggerKind:
          context.triggerKind === vscode.InlineCompletionTriggerKind.Invoke
            ? "invoked"
            : "automatic",
        selectedCompletionInfo:
          selected === undefined
            ? undefined
            : { range: toLspRange(selected.range), text: selected.text },
      },
      token,
      () => document.isClosed || document.version !== version,
    );
    return items.map(
      (item) =>
        new vscode.InlineCompletionItem(
          item.insertText,
          new vscode.Range(
            item.range.start.line,
            item.range.start.character,
            item.range.end.line,
            item.range.end.character,
          ),
        ),
    );
  }
}

let bridges: Bridges | undefined;

export function activate(context: vscode.ExtensionContext): void {
  const output = vscode.window.createOutputChannel("completiond");
  bridges = new Bridges(output);
  const registry = bridges;
  context.subscriptions.push(
    output,
    registry,
    vscode.languages.registerInlineCompletionItemProvider(
      { scheme: "file" },
      new Provider(registry),
    ),
    vscode.workspace.onDidOpenTextDocument((document) => registry.forDocument(document)),
    vscode.workspace.onDidChangeWorkspaceFolders((event) => {
      for (const folder of event.removed) {
        void registry.stop(folder.uri.toString());
      }
    }),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration(SECTION)) {
        void registry.reconfigure(event);
      }
    }),
    vscode.commands.registerCommand("completiond.restart", () => registry.restartAll()),
  );
  registry.startForOpenDocuments();
}

export async function deactivate(): Promise<void> {
  await bridges?.stopAll();
  bridges = undefined;
}
