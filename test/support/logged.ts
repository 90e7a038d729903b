/** A logger whose lines a test reads (pino's levels: 30 info, 40 warn, 50 error). */
import { Writable } from "node:stream";
import { createLogger, type Logger } from "../../src/log.js";

export type LoggedLine = { level: number; msg: string; [field: string]: unknown };

export function logged(): { log: Logger; lines: LoggedLine[] } {
  const lines: LoggedLine[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      lines.push(JSON.parse(String(chunk)) as LoggedLine);
      done();
    },
  });
  return { log: createLogger({ level: "debug", destination }), lines };
}
