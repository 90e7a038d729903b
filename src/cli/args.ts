import { ConfigError, loadConfig, type NodeConfig } from "../config/index.js";
import { parseArgs } from "node:util";

/** Wrong words on the command line: printed without a stack, exit code 2. */
export class CliUsageError extends Error {}

type OptionSpec = Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }>;

export interface ParsedCommand {
  values: Record<string, string | boolean | string[] | boolean[] | undefined>;
  positionals: string[];
}

/** node:util parseArgs, strict, with --help on every command and a usage error naming the command. */
export function parseCommand(command: string, argv: string[], options: OptionSpec): ParsedCommand {
  try {
    return parseArgs({
      args: argv,
      options: { ...options, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new CliUsageError(`${command}: ${(err as Error).message}`);
  }
}

/** The node's config from `file`; a bad one is a usage error (exit 2) naming every problem. */
export function loadConfigOrUsage(file: string): NodeConfig {
  try {
    return loadConfig(file);
  } catch (err) {
    if (err instanceof ConfigError) throw new CliUsageError(err.message);
    throw err;
  }
}
