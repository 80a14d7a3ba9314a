"""An emulated Alipay (OpenAPI "gateway.do", RSA2 keys), served over HTTP, faithful to the
wire protocol (gateways/alipay_protocol.py) and to the behaviour merchants meet:

- /gateway.do (GET and POST, parameters merged) checks the request's signature against the
  merchant's public key (`40002 isv.invalid-signature`, unsigned, when it does not verify),
  dispatches on `method` (precreate, page.pay, query, close, refund, fastpay.refund.query)
  and signs its answers with its own key;
- a precreate QR is no trade until scanned (query and close: `ACQ.TRADE_NOT_EXIST`);
  trades time out at `time_expire` / `qr_code_timeout_express` / `timeout_express`
  (TRADE_CLOSED, notified);
- notifies are signed form posts, retried on Alipay's schedule (compressible with
  `time_factor`) with the same notify_id until the merchant answers exactly `success`;
- faults (gateways/emulators/faults.py) as for the sandbox.

Controls: `POST /_emulator/buyer` `{"payment": <QR content or page.pay URL>, "outcome":
"succeeded" | "declined" | "scanned"}`; "declined" is a payment that failed at the cashier,
which Alipay never reports (the trade stays WAIT_BUYER_PAY until paid, closed or timed out).
`GET /_emulator/state`, `PUT /_emulator/faults`, `POST /_emulator/trades/{no}/finish`.
The buyer's page: `/qr/{token}` (the QR content), Pay and Decline.

Keys: made on first start under the keys directory (keys.py). Run it alone with
`python -m gateways.emulators.alipay` (port KASSA_ALIPAY_PORT, default 8002).
"""

from gateways.emulators.alipay.app import app_from_env, create_app
from gateways.emulators.alipay.keys import AlipayKeys, ensure_keys
from gateways.emulators.alipay.state import AlipayConfig

__all__ = ["AlipayConfig", "AlipayKeys", "app_from_env", "create_app", "ensure_keys"]
