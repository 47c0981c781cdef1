// jobtail: the gate in front of cached stream reads (CloudFront Functions, cloudfront-js-2.0,
// viewer request). A read of /v1/stream/runs/<run_id> passes only with a live ?token= for that
// run, so the cache, whose key leaves the token out, serves a run's lines to that run's viewers
// only. The token is the app's (shared/jobtail/web/auth.py): itsdangerous URLSafeSerializer,
// salt "jobtail-stream:<run_id>", django-concat key derivation, HMAC-SHA1, payload the expiry
// as JSON, "<base64url payload>.<base64url signature>". The secrets come from the
// KeyValueStore key "stream-secrets": JOBTAIL_SECRET and any JOBTAIL_OLD_SECRETS still
// verifying, comma-separated (the edge never signs, so their order does not matter; one key is
// one KeyValueStore read per request).
// Code that runs both here and in Node (tests/cloudfront): no template literals (the template
// inlines this file through Fn::Sub), only crypto.createHash/createHmac and Buffer.
import cf from 'cloudfront';

const crypto = require('crypto');
const kvs = cf.kvs('${KeyValueStoreId}');
const RUN_PATH = /^\/v1\/stream\/runs\/([A-Za-z0-9_-]{1,128})$/;
const PAYLOAD = /^[A-Za-z0-9_-]{1,32}$/;
const SIGNATURE = /^[A-Za-z0-9_-]{27}$/; // 20 bytes of HMAC-SHA1, unpadded base64url

function reject(status, text, detail) {
  return {
    statusCode: status,
    statusDescription: text,
    headers: {
      'content-type': { value: 'application/json' },
      'cache-control': { value: 'no-store' },
      'access-control-allow-origin': { value: '*' },
    },
    body: { encoding: 'text', data: JSON.stringify({ detail: detail }) },
  };
}

function sameText(a, b) {
  // constant time for equal lengths; the lengths are public (fixed by the format)
  if (a.length !== b.length) {
    return false;
  }
  var diff = 0;
  for (var i = 0; i < a.length; i++) {
    diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  }
  return diff === 0;
}

function signature(secret, runId, payload) {
  var key = crypto.createHash('sha1').update('jobtail-stream:' + runId + 'signer' + secret).digest();
  return crypto.createHmac('sha1', key).update(payload).digest('base64url');
}

// Why the token does not open this run's stream, or null when it does.
function checkToken(secrets, runId, token, now) {
  var dot = token.lastIndexOf('.');
  var payload = token.slice(0, dot);
  var given = token.slice(dot + 1);
  if (dot < 1 || !PAYLOAD.test(payload) || !SIGNATURE.test(given)) {
    return 'malformed stream token';
  }
  var valid = false;
  for (var i = 0; i < secrets.length; i++) {
    valid = sameText(signature(secrets[i], runId, payload), given) || valid; // every secret tried
  }
  if (!valid) {
    return 'stream token is not valid for this run';
  }
  var text = Buffer.from(payload, 'base64url').toString('utf8');
  if (!/^[0-9]{1,12}$/.test(text)) {
    return 'malformed stream token';
  }
  if (Number(text) <= now) {
    return 'stream token expired: ask for a new one with the status route';
  }
  return null;
}

async function secretsFromStore() {
  var all = (await kvs.get('stream-secrets')).split(',').map(function (s) { return s.trim(); });
  all = all.filter(function (s) { return s.length > 0; });
  if (all.length === 0) {
    throw new Error('stream-secrets is empty');
  }
  return all;
}

async function handler(event) {
  var request = event.request;
  if (request.method === 'OPTIONS') {
    return request; // CORS preflight: never cached, carries no data
  }
  var match = RUN_PATH.exec(request.uri);
  if (match === null) {
    return reject(403, 'Forbidden',
      'through the CDN, read a run by its id: /v1/stream/runs/<run_id>?token=...');
  }
  var token = request.querystring.token;
  if (token === undefined || !token.value) {
    return reject(401, 'Unauthorized', 'missing stream token: add ?token= from the status route');
  }
  if (token.multiValue && token.multiValue.length > 1) {
    return reject(400, 'Bad Request', 'send one stream token');
  }
  var secrets;
  try {
    secrets = await secretsFromStore();
  } catch (e) {
    return reject(503, 'Service Unavailable', 'the edge has no stream secret (see docs/deploy.md)');
  }
  var problem = checkToken(secrets, match[1], token.value, Date.now() / 1000);
  if (problem !== null) {
    return reject(401, 'Unauthorized', problem);
  }
  return request; // the cache policy keeps the token out of the cache key
}
