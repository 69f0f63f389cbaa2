"""The HTTP API's version and limits, shared by the backend service and the add-on's client."""

API_VERSION = 1
API_PREFIX = f"/v{API_VERSION}"
#: zeroconf service type the backend advertises and the add-on browses.
SERVICE_TYPE = "_asset2vec._tcp.local."
DEFAULT_PORT = 8765
#: Largest accepted bundle upload (18 PNGs at up to 512 px fit comfortably).
MAX_UPLOAD_BYTES = 32 * 1024 * 1024
#: Header carrying the token when the backend serves beyond loopback.
TOKEN_HEADER = "X-Asset2Vec-Token"
