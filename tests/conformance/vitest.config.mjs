// Runs the pinned conformance suite's own runner file (it lives under node_modules, which vitest
// excludes by default) against CONFORMANCE_TEST_URL.
export default {
  test: {
    include: ["node_modules/@durable-streams/server-conformance-tests/dist/test-runner.js"],
    exclude: [],
    testTimeout: 30000,
  },
}
