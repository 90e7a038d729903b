// The baseline of `npm run bench -- http`: a trivial fastify JSON route taking the same body
// schema as POST /v1/records and answering at once (no WAL, no fsync). Prints its port.
import Fastify from "fastify";

const app = Fastify({ logger: false });
app.post(
  "/v1/records",
  {
    schema: {
      body: {
        type: "object",
        additionalProperties: false,
        required: ["key", "tenant", "outcome"],
        properties: {
          key: { type: "string" },
          tenant: { type: "string" },
          outcome: { type: "string" },
          body: {},
        },
      },
    },
  },
  async (req) => ({ key: req.body.key, ok: true }),
);
await app.listen({ host: "127.0.0.1", port: 0 });
process.stdout.write(`${JSON.stringify({ port: app.server.address().port })}\n`);
process.on("SIGTERM", () => void app.close().then(() => process.exit(0)));
