import os

import uvicorn

from gateways.emulators.alipay import app_from_env
from gateways.emulators.alipay.app import DEFAULT_PORT

uvicorn.run(
    app_from_env(),
    host="127.0.0.1",
    port=int(os.environ.get("KASSA_ALIPAY_PORT", DEFAULT_PORT)),
    log_level="warning",
)
