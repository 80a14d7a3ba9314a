"""Protocol-faithful local stand-ins for payment gateways, so everything runs offline."""
