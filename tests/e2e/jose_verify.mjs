// Verifies JWTs the way an application using jose does (createRemoteJWKSet + jwtVerify): the Node interop check
// of tests/e2e/test_assertion.py. Reads one JSON object on standard input:
//   {"jose_from": "<a package.json whose node_modules holds jose>", "jwks_url", "issuer", "audience", "tokens": [...]}
// and prints one result per token: {"ok": true, "header", "payload"} or {"ok": false, "code"}. Never prints a token.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const jose = createRequire(input.jose_from).resolve('jose');
const { createRemoteJWKSet, jwtVerify } = await import(pathToFileURL(jose).href);
const jwks = createRemoteJWKSet(new URL(input.jwks_url));

const results = [];
for (const token of input.tokens) {
  try {
    const { payload, protectedHeader } = await jwtVerify(token, jwks, {
      issuer: input.issuer,
      audience: input.audience,
      algorithms: ['EdDSA', 'ES256'],
      requiredClaims: ['sub', 'iat', 'exp', 'jti'],
    });
    results.push({ ok: true, header: protectedHeader, payload });
  } catch (e) {
    results.push({ ok: false, code: e.code ?? e.name });
  }
}
process.stdout.write(JSON.stringify(results));
