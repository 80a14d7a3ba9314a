import uvicorn

from gateways.emulators.sandbox import app_from_settings
from kassa.settings import get_settings

uvicorn.run(
    app_from_settings(), host="127.0.0.1", port=get_settings().sandbox_port, log_level="warning"
)
