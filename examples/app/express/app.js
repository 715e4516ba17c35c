// A tiny app behind trustgate: every path answers with the verified identity as JSON (401 without one).
// Run: npm ci && TRUSTED_PROXY_JWKS_URL=… TRUSTED_PROXY_ISSUER=… TRUSTED_PROXY_AUDIENCE=… node app.js
import express from 'express';
import { trustedProxyIdentity } from './trusted-proxy.js';

const app = express();
app.disable('x-powered-by');
app.use(trustedProxyIdentity());
app.use((req, res) => res.json({ identity: req.identity }));

const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT || 3000);
app.listen(port, host, (err) => {
  if (err) throw err;
  console.log(`listening on http://${host}:${port}`);
});
