"""goalledger.projections"""
