// Reads a Durable Stream with the TypeScript client until it closes, printing each JSON message
// on its own line: node read_stream.mjs <url> <long-poll|sse|auto (live: true)>
import { stream } from "@durable-streams/client"

const [url, live] = process.argv.slice(2)
const response = await stream({ url, offset: "-1", live: live === "auto" ? true : live })
await new Promise((resolve, reject) => {
  response.subscribeJson(async (batch) => {
    for (const item of batch.items) process.stdout.write(JSON.stringify(item) + "\n")
    if (batch.streamClosed) resolve()
  })
  response.closed.then(resolve, reject)
})
