// Express middleware: the identity trustgate (the trusted proxy in front of this app) asserts for the caller.
// trustgate verifies the caller's credential, then adds a short-lived JWT it signs itself; this middleware
// checks that JWT's signature (keys from the proxy's JWKS), issuer, audience and expiry, and sets req.identity.
// README.md, "For application developers". The assertion is a bearer credential: never log it.
import { createRemoteJWKSet, jwtVerify } from 'jose';

export function trustedProxyIdentity(env = process.env) {
  const header = (env.TRUSTED_PROXY_ASSERTION_HEADER || 'x-trustgate-assertion').toLowerCase();
  const { TRUSTED_PROXY_JWKS_URL: jwksUrl, TRUSTED_PROXY_ISSUER: issuer, TRUSTED_PROXY_AUDIENCE: audience } = env;
  if (!jwksUrl || !issuer || !audience) {
    throw new Error('set TRUSTED_PROXY_JWKS_URL, TRUSTED_PROXY_ISSUER and TRUSTED_PROXY_AUDIENCE');
  }
  const jwks = createRemoteJWKSet(new URL(jwksUrl)); // cached; fetched again for an unknown kid (rotation)

  return async function identity(req, res, next) {
    const values = req.headersDistinct[header] ?? [];
    if (values.length !== 1) return refuse(res, values.length ? 'duplicate' : 'missing');
    try {
      const { payload } = await jwtVerify(values[0], jwks, {
        issuer,
        audience,
        algorithms: ['EdDSA', 'ES256'],
        requiredClaims: ['sub', 'iat', 'exp'],
      });
      req.identity = { subject: payload.sub, claims: payload }; // map claims to your user model here
      return next();
    } catch (e) {
      return refuse(res, e.code ?? 'invalid'); // jose's code (ERR_JWT_EXPIRED, …), never the token
    }
  };
}

function refuse(res, why) {
  console.warn(`identity assertion refused: ${why}`);
  res.status(401).json({ error: 'unauthorized' });
}
