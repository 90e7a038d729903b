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
