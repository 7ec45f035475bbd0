"""The control API's client side: the typed control client, daemon contexts and starting a local tursid."""
