// A DPoP client for tests/e2e/test_dpop.py, made of panva/dpop (RFC 9449): keys and proofs come from that
// library, not from trustgate. One JSON command per stdin line, one JSON answer per stdout line:
//   {"op": "key", "alg": "ES256" | "RS256" | "PS256" | "Ed25519"}  -> {"id": N, "jkt": "<RFC 7638 thumbprint>"}
//   {"op": "proof", "id": N, "htm": "GET", "htu": "https://…", "token": "<access token>"} -> {"proof": "<JWT>"}
// Keys live only in this process; they are made for the test and protect nothing.
import * as DPoP from 'dpop';
import { createInterface } from 'node:readline';

const keys = [];

async function run(cmd) {
  if (cmd.op === 'key') {
    const pair = await DPoP.generateKeyPair(cmd.alg, { extractable: false });
    keys.push(pair);
    return { id: keys.length - 1, jkt: await DPoP.calculateThumbprint(pair.publicKey) };
  }
  if (cmd.op === 'proof') {
    const pair = keys[cmd.id];
    if (!pair) throw new Error('unknown key');
    return { proof: await DPoP.generateProof(pair, cmd.htu, cmd.htm, undefined, cmd.token) };
  }
  throw new Error(`unknown op ${cmd.op}`);
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  let out;
  try {
    out = await run(JSON.parse(line));
  } catch (e) {
    out = { error: String(e && e.message ? e.message : e) };
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}
