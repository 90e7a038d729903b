/**
 * One temporary PostgreSQL cluster for the whole suite (test/support/postgres.ts): started
 * before the first file, its URL given to every file as inject("pgUrl"), stopped by PID at
 * the end. Each file creates the databases it uses.
 */
import type { TestProject } from "vitest/node";
import { startPostgres } from "../support/postgres.js";

declare module "vitest" {
  export interface ProvidedContext {
    pgUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startPostgres();
  project.provide("pgUrl", server.url);
  return () => server.stop();
}
