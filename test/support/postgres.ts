/** The temporary PostgreSQL cluster of the tests (and of `crr bench` scenarios with `postgres:`). */
export { freshDatabase, postgresBin, startPostgres, type PostgresServer } from "../../src/bench/postgres.js";
