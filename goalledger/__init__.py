"""goalledger: an event-sourced ledger for OKRs and KPIs."""
