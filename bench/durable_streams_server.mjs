// The Durable Streams reference server (@durable-streams/server, Node) as the fan-out bench's
// peer: started on a free port, prints its URL, stops on SIGTERM. argv[2] is the directory whose
// node_modules holds the package (tests/conformance, after `npm ci` there).
import { pathToFileURL } from "node:url"
import { join } from "node:path"

const entry = join(process.argv[2], "node_modules/@durable-streams/server/dist/index.js")
const { DurableStreamTestServer } = await import(pathToFileURL(entry).href)
const server = new DurableStreamTestServer({ port: 0, host: "127.0.0.1" })
await server.start()
console.log(server.url)
process.on("SIGTERM", async () => {
  await server.stop()
  process.exit(0)
})
