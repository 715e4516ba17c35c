"""A tiny app behind trustgate: every path answers with the verified identity as JSON (401 without one).
Run: TRUSTED_PROXY_JWKS_URL=… TRUSTED_PROXY_ISSUER=… TRUSTED_PROXY_AUDIENCE=… uvicorn app:app --host 127.0.0.1
"""
from fastapi import Depends, FastAPI

from trusted_proxy import Identity, trusted_identity

app = FastAPI(dependencies=[Depends(trusted_identity)])

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@app.api_route("/{path:path}", methods=METHODS)
def echo(path: str, identity: Identity = Depends(trusted_identity)) -> dict:
    return {"identity": {"subject": identity.subject, "claims": identity.claims}}
