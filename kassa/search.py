"""Custom search attributes: support finds checkouts in the Temporal UI by these. The worker,
`kassa run` and the tests register them on the server (orchestration/temporal.py)."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

ORDER_ID = SearchAttributeKey.for_keyword("OrderId")
CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
PAYMENT_STATUS = SearchAttributeKey.for_keyword("PaymentStatus")
GATEWAY = SearchAttributeKey.for_keyword("Gateway")
AMOUNT_MINOR = SearchAttributeKey.for_int("AmountMinor")
REFUND_STATUS = SearchAttributeKey.for_keyword("RefundStatus")
SEARCH_ATTRIBUTES = (ORDER_ID, CUSTOMER_ID, PAYMENT_STATUS, GATEWAY, AMOUNT_MINOR, REFUND_STATUS)
