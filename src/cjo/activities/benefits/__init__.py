"""Benefits (goods): grants from a ledger, redemption, revocation and expiry."""
