// Starts the Node reference server (@durable-streams/server) on a free port and prints its URL:
// used to compare jobtail's conformance counts with the reference on the same suite version.
import { DurableStreamTestServer } from "@durable-streams/server"

const server = new DurableStreamTestServer({ port: 0, host: "127.0.0.1" })
await server.start()
console.log(server.url)
process.on("SIGTERM", async () => {
  await server.stop()
  process.exit(0)
})
