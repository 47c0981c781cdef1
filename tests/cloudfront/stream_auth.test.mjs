// The CloudFront Function cloudfront/stream-auth.js, run by Node's test runner in a sandbox
// shaped like CloudFront's runtime: `cf.kvs()` is an in-memory KeyValueStore, `require` gives
// only `crypto`. Tokens come from the app itself: tests/functions/test_cloudfront.py makes them
// with jobtail.web.auth and passes their file in JOBTAIL_CF_VECTORS (run it through pytest).
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import vm from 'node:vm';

const SOURCE = new URL('../../cloudfront/stream-auth.js', import.meta.url);
const IMPORT = "import cf from 'cloudfront';\n";
const vectorsFile = process.env.JOBTAIL_CF_VECTORS;
const skip = vectorsFile ? false : 'JOBTAIL_CF_VECTORS not set: run through pytest';
const v = vectorsFile ? JSON.parse(readFileSync(vectorsFile, 'utf8')) : {};

function load(store) {
  const source = readFileSync(SOURCE, 'utf8');
  assert.ok(source.includes(IMPORT), 'the function imports cf from cloudfront');
  const code = source.replace(IMPORT, '').replaceAll('${KeyValueStoreId}', 'kvs-under-test');
  const cf = {
    kvs(id) {
      assert.equal(id, 'kvs-under-test');
      return {
        async get(key) {
          if (!(key in store)) throw new Error('KeyNotFound: ' + key);
          return store[key];
        },
      };
    },
  };
  const require = (name) => {
    if (name !== 'crypto') throw new Error('not in CloudFront Functions: ' + name);
    return crypto;
  };
  const sandbox = vm.createContext({ cf, require, Buffer });
  return vm.runInContext(code + '\n;({ handler, checkToken });', sandbox);
}

function event(uri, query = {}, method = 'GET') {
  const querystring = {};
  for (const [name, value] of Object.entries(query)) {
    const values = Array.isArray(value) ? value : [value];
    querystring[name] = { value: values[0] };
    if (values.length > 1) querystring[name].multiValue = values.map((x) => ({ value: x }));
  }
  return {
    version: '1.0',
    context: { eventType: 'viewer-request' },
    viewer: { ip: '192.0.2.1' },
    request: { method, uri, querystring, headers: {}, cookies: {} },
  };
}

const keys = () => ({ 'stream-secrets': [v.secret, ...v.old_secrets].join(', ') });
const path = (runId) => '/v1/stream/runs/' + runId;

async function denied(result, status, words) {
  assert.equal(result.statusCode, status, JSON.stringify(result));
  assert.equal(result.headers['cache-control'].value, 'no-store');
  const detail = JSON.parse(result.body.data).detail;
  assert.match(detail, words);
}

test('a valid token passes, the request unchanged', { skip }, async () => {
  const { handler } = load(keys());
  const e = event(path(v.run_id), { token: v.tokens.valid, offset: '-1', live: 'long-poll' });
  const result = await handler(e);
  assert.equal(result, e.request);
  assert.equal(result.uri, path(v.run_id));
});

test('a token signed with a retired secret still passes while rotating', { skip }, async () => {
  const { handler } = load(keys());
  const e = event(path(v.run_id), { token: v.tokens.retired });
  assert.equal(await handler(e), e.request);
});

test('an expired token is refused', { skip }, async () => {
  const { handler } = load(keys());
  await denied(await handler(event(path(v.run_id), { token: v.tokens.expired })), 401, /expired/);
});

test('a tampered token is refused', { skip }, async () => {
  const { handler } = load(keys());
  for (const token of [v.tokens.tampered_payload, v.tokens.tampered_signature]) {
    await denied(await handler(event(path(v.run_id), { token })), 401, /not valid for this run/);
  }
});

test("another run's token is refused", { skip }, async () => {
  const { handler } = load(keys());
  const result = await handler(event(path(v.run_id), { token: v.tokens.other_run }));
  await denied(result, 401, /not valid for this run/);
  // and it does open its own run
  const own = event(path(v.other_run_id), { token: v.tokens.other_run });
  assert.equal(await handler(own), own.request);
});

test('a missing, empty or malformed token is refused', { skip }, async () => {
  const { handler } = load(keys());
  await denied(await handler(event(path(v.run_id))), 401, /missing stream token/);
  await denied(await handler(event(path(v.run_id), { token: '' })), 401, /missing/);
  for (const token of ['nodot', '.sig', 'a.b', v.tokens.valid + '.x', 'é' + v.tokens.valid]) {
    await denied(await handler(event(path(v.run_id), { token })), 401, /malformed|not valid/);
  }
});

test('a token made with an unknown secret is refused', { skip }, async () => {
  const { handler } = load({ 'stream-secrets': 'another-secret-of-at-least-32-characters!' });
  await denied(await handler(event(path(v.run_id), { token: v.tokens.valid })), 401, /not valid/);
  await denied(await handler(event(path(v.run_id), { token: v.tokens.retired })), 401, /not valid/);
});

test('two tokens in one request are refused', { skip }, async () => {
  const { handler } = load(keys());
  const e = event(path(v.run_id), { token: [v.tokens.valid, v.tokens.other_run] });
  await denied(await handler(e), 400, /one stream token/);
});

test('only a run read by its id goes through the cached path', { skip }, async () => {
  const { handler } = load(keys());
  for (const uri of [
    '/v1/stream/runs/petstore/pydantic', // the key's latest run: not stable, not cacheable
    '/v1/stream/other',
    '/v1/stream/runs/' + v.run_id + '/',
    '/v1/stream/runs/%2e%2e',
  ]) {
    await denied(await handler(event(uri, { token: v.tokens.valid })), 403, /by its id/);
  }
});

test('a CORS preflight passes without a token', { skip }, async () => {
  const { handler } = load(keys());
  const e = event(path(v.run_id), {}, 'OPTIONS');
  assert.equal(await handler(e), e.request);
});

test('an edge without its secret answers 503, not a pass', { skip }, async () => {
  for (const store of [{}, { 'stream-secrets': ' , ' }]) {
    const { handler } = load(store);
    await denied(await handler(event(path(v.run_id), { token: v.tokens.valid })), 503, /secret/);
  }
});

test('checkToken alone: the time decides expiry at the exact second', { skip }, async () => {
  const { checkToken } = load(keys());
  const secrets = [v.secret];
  assert.equal(checkToken(secrets, v.run_id, v.tokens.valid, v.valid_expires - 1), null);
  assert.match(checkToken(secrets, v.run_id, v.tokens.valid, v.valid_expires), /expired/);
});
